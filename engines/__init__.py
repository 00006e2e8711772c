"""Text engines behind one interface (see engines.base.Engine), opened from an EngineSpec.

Each kind's module imports its ML library only when an engine of that kind is opened, so
importing `engines` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engines.base import Engine, EngineError, EngineUnsupported, Sampling

if TYPE_CHECKING:
    from sessions.model import EngineSpec

KINDS = ("llamacpp", "transformers", "openai")

__all__ = ["KINDS", "Engine", "EngineError", "EngineUnsupported", "Sampling", "open_engine"]


def open_engine(spec: EngineSpec) -> Engine:
    """The engine an EngineSpec describes, loaded and ready; EngineError if it cannot be."""
    if spec.kind == "llamacpp":
        from engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(spec)
    if spec.kind == "transformers":
        from engines.hf import TransformersEngine

        return TransformersEngine(spec)
    if spec.kind == "openai":
        from engines.openai_compat import OpenAIEngine

        return OpenAIEngine(spec)
    raise EngineError(f"engine {spec.id!r} has kind {spec.kind!r}; use one of: {', '.join(KINDS)}.")
