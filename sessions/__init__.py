"""Sessions: the typed session model, its TOML file, validation, cards and workspace.

No UI and no ML libraries here: only the standard library and tomlkit. The common names are
importable from the package (`from sessions import SessionFile`); they load on first use so
that `import supervisor.jobs` in a worker stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Session": "sessions.model",
    "Persona": "sessions.model",
    "Trait": "sessions.model",
    "KnowledgeProbe": "sessions.model",
    "EngineSpec": "sessions.model",
    "DatasetSpec": "sessions.model",
    "RunSpec": "sessions.model",
    "EvalSpec": "sessions.model",
    "Annotation": "sessions.model",
    "SessionFile": "sessions.store",
    "SessionError": "sessions.validate",
    "Problem": "sessions.validate",
    "workspace_for": "sessions.workspace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sessions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
