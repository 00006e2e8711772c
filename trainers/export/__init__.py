"""Export of a trained adapter: merge, GGUF conversion, quantisation, Ollama Modelfile, and the
verification that the GGUF computes what the trained model computes.

Each step is its own module so the job (`trainers.export.job`), the CLI and the tests can call
one step alone; ML libraries are imported inside functions, so importing this package is free.
"""

from __future__ import annotations

import os

from engines.models import quiet_transformers  # noqa: F401  (the one copy; export's steps import it from here)


class ExportError(ValueError):
    """An export step failed; the message is one sentence naming the file or setting and the fix."""


def cpu_threads() -> int:
    """Threads for llama.cpp and torch in export and verification: every core on an idle
    machine, fewer when other work keeps them busy.

    Both libraries wait for their threads at barriers; when another process holds a core, each
    barrier waits for a time slice. Measured on the 2-core machine under a load of ~9: a
    verification check took 116 s with 2 threads and 11 s with 1.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - load + 1)))  # +1: this process's own share of the load
