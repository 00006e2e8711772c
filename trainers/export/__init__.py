"""Export of a trained adapter: merge, GGUF conversion, quantisation, Ollama Modelfile, and the
verification that the GGUF computes what the trained model computes.

Each step is its own module so the job (`trainers.export_job`), the CLI and the tests can call
one step alone; ML libraries are imported inside functions, so importing this package is free.
"""

from __future__ import annotations


class ExportError(ValueError):
    """An export step failed; the message is one sentence naming the file or setting and the fix."""
