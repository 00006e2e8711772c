"""Turning a run id into something that generates: its export (GGUF) or its adapter.

Evaluations, chat and the experiments name models by run id; this is the one place that finds
the newest finished training job of a run (its PEFT adapter) and, if that job was exported, the
verified GGUF (llama.cpp is the faster engine on a CPU).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessions import jobs
from sessions.model import EngineSpec

# The export that a run's evaluation prefers, best first.
GGUF_PREFERENCE = ("q8_0", "f16")


def finished_jobs(workspace: Path, kind: str) -> list[tuple[jobs.JobStatus, dict[str, Any]]]:
    """Finished jobs of a kind, newest first, with their specs."""
    out = []
    for status in jobs.list_jobs(workspace):
        if status.kind != kind or status.state != "finished":
            continue
        try:
            out.append((status, jobs.read_spec(status.dir)))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda pair: pair[0].ended or pair[0].created or 0, reverse=True)
    return out


def training_job(workspace: Path, run_id: str) -> Path | None:
    """The newest finished training job of run `run_id` that left an adapter."""
    for status, spec in finished_jobs(workspace, "train"):
        run = spec.get("run") if isinstance(spec.get("run"), dict) else {}
        if run.get("id") == run_id and (status.dir / "adapter" / "adapter_config.json").is_file():
            return status.dir
    return None


def export_gguf(workspace: Path, train_dir: Path) -> Path | None:
    """The preferred verified GGUF exported from `train_dir`, if an export job made one."""
    for status, spec in finished_jobs(workspace, "export"):
        if str(spec.get("train_job") or "") != train_dir.name:
            continue
        for quant in GGUF_PREFERENCE:
            path = status.dir / "export" / f"model-{quant}.gguf"
            if path.is_file():
                return path
    return None


def run_resolver(session_file: Any, prefer_gguf: bool = True) -> Callable[[str], EngineSpec | None]:
    """A `resolve(ref)` hook for evaluations: run ids become engines, other refs pass (None)."""
    session = session_file.session
    workspace = Path(session_file.workspace)

    def resolve(ref: str) -> EngineSpec | None:
        run = session.run(ref)
        if run is None:
            return None
        train_dir = training_job(workspace, ref)
        if train_dir is None:
            raise ValueError(
                f"run {ref!r} has no finished training job with an adapter yet; train it first "
                f"(persona-tui train {session_file.path} --run {ref})."
            )
        gguf = export_gguf(workspace, train_dir) if prefer_gguf else None
        if gguf is not None:
            return EngineSpec(id=ref, kind="llamacpp", model=str(gguf))
        return EngineSpec(id=ref, kind="transformers", model=run.base_model, adapter=str(train_dir / "adapter"))

    return resolve
