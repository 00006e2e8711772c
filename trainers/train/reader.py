"""The one reader of a training job's products: what every pane, command and study reads back.

A training job's folder (`<workspace>/jobs/<id>/`, see supervisor.jobs) holds, besides the
protocol's files, `checkpoints/checkpoint-<step>/` (transformers' checkpoints; whole once
trainer_state.json parses), `adapter/` (the trained LoRA adapter) and `result.json` (what the
worker wrote at the end: run, state, step, adapter, engine, summary). The loss is in the
protocol's events.jsonl. Nothing here imports torch: the app reads runs without the ML stack.

    readout = read_run(job_dir)          # events, loss points, the train_end event, result.json
    adapter_dir(job_dir)                 # the adapter folder, or None when the run left none
    last_checkpoint(checkpoints_dir(job_dir))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import jobs
from trainers.train.loss_curve import LossSummary, Point, loss_points, loss_summary

RESULT_FILE = "result.json"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
CHECKPOINT_PREFIX = "checkpoint-"


def read_result(job_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """result.json of a finished (or stopped) training job; None while there is none or it is unreadable."""
    try:
        data = json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def adapter_dir(job_dir: str | os.PathLike[str]) -> Path | None:
    """The job's trained adapter folder, when it holds a whole adapter (its adapter_config.json)."""
    folder = Path(job_dir) / ADAPTER_DIR
    return folder if (folder / "adapter_config.json").is_file() else None


def checkpoints_dir(job_dir: str | os.PathLike[str]) -> Path:
    return Path(job_dir) / CHECKPOINTS_DIR


def checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    try:
        return int(name[len(CHECKPOINT_PREFIX) :])
    except ValueError:
        return None


def checkpoint_complete(path: Path) -> bool:
    """transformers writes trainer_state.json last, so a checkpoint is whole once it parses."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints(folder: Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) of every checkpoint folder in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        step = checkpoint_step(p)
        if step is not None and p.is_dir():
            out.append((step, p, checkpoint_complete(p)))
    return sorted(out)


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: what a resumed run continues from."""
    done = [p for _, p, ok in checkpoints(folder) if ok]
    return done[-1] if done else None


@dataclass
class RunReadout:
    """A training job read back: its events, the loss as points, the last train_end event, result.json."""

    events: list[dict[str, Any]] = field(default_factory=list)
    train: list[Point] = field(default_factory=list)
    evals: list[Point] = field(default_factory=list)
    end: dict[str, Any] | None = None
    result: dict[str, Any] | None = None

    def loss(self) -> LossSummary:
        """Window means, never two single noisy steps (see loss_curve)."""
        return loss_summary(self.train, self.evals)


def read_run(job_dir: str | os.PathLike[str]) -> RunReadout:
    events, _ = jobs.read_events(Path(job_dir))
    train, evals = loss_points(events)
    end = next((e for e in reversed(events) if e.get("event") == "train_end"), None)
    return RunReadout(events=events, train=train, evals=evals, end=end, result=read_result(job_dir))
