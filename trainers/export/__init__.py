"""Export of a trained adapter: merge, GGUF conversion, quantisation, Ollama Modelfile, and the
verification that the GGUF computes what the trained model computes.

Each step is its own module so the job (`trainers.export.job`), the CLI and the tests can call
one step alone; ML libraries are imported inside functions, so importing this package is free.
"""

from __future__ import annotations

from engines.models import quiet_transformers  # noqa: F401  (the one copy; export's steps import it from here)


class ExportError(ValueError):
    """An export step failed; the message is one sentence naming the file or setting and the fix."""


def cpu_threads() -> int:
    """Threads for llama.cpp and torch in export and verification: one per core that other
    processes leave idle (`trainers.train.hardware.auto_threads`, as training chooses).

    Both libraries wait for their threads at barriers; when another process holds a core, each
    barrier waits for a time slice. Measured on the 2-core machine under a load of ~9: a
    verification check took 116 s with 2 threads and 11 s with 1. The 1-minute load average,
    read here before, still counted the training that had just ended on both cores, so the
    demo's export verified on one thread of an idle machine.
    """
    from trainers.train.hardware import auto_threads

    return auto_threads()
