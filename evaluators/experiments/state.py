"""What an experiment has finished, on disk, so that a rerun never redoes it.

`<workspace>/experiments/<id>/state.json` holds the experiment's settings (a rerun with other
sizes is refused rather than mixing two experiments in one table) and one record per step:

    {"id": "odile-fc", "study": "format-comparison", "config": {...},
     "steps": {"data:chat_demos": {"state": "done", "job": "dataset-...", "count": 12},
               "train:chat_demos": {"state": "started", "job": "train-..."}, ...}}

A step is "started" once its job exists (so a rerun follows or resumes that very job instead of
starting another) and "done" when the job finished. Every write is atomic: a killed process
leaves the previous state, never half of one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
RESULT_FILE = "result.json"
EXPERIMENTS_DIR = "experiments"


class ExperimentError(ValueError):
    """An experiment cannot go on; one sentence naming the step, file or option and the fix."""


def experiment_dir(workspace: str | Path, exp_id: str) -> Path:
    from sessions.workspace import safe_id

    return Path(workspace) / EXPERIMENTS_DIR / safe_id(exp_id, "experiment id")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (sessions.store.atomic_write: temp file, fsync, rename)."""
    from sessions.store import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n", backup=False)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ExperimentError(f"{path} is not valid JSON ({e.msg}); delete it to start the experiment over.") from None
    return data if isinstance(data, dict) else None


class ExperimentState:
    """The state file of one experiment: its config and its steps."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.dir = directory
        self.data = data

    @property
    def path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data.setdefault("steps", {})

    @classmethod
    def open(cls, workspace: str | Path, exp_id: str, study: str, config: dict[str, Any]) -> ExperimentState:
        """The experiment's state, created if new; refused when `config` differs from the one
        it was started with (every key of the stored config must match)."""
        directory = experiment_dir(workspace, exp_id)
        data = read_json(directory / STATE_FILE)
        if data is None:
            state = cls(
                directory,
                {
                    "id": exp_id,
                    "study": study,
                    "config": dict(config),
                    "steps": {},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
            )
            state.save()
            return state
        if data.get("study") != study:
            raise ExperimentError(
                f"experiment {exp_id!r} in {directory} is a {data.get('study')!r} study, not {study!r}; "
                "pick another id with --id."
            )
        old = data.get("config") or {}
        for key, value in config.items():
            if key in old and old[key] != value:
                raise ExperimentError(
                    f"experiment {exp_id!r} was started with {key} = {old[key]!r}, not {value!r}; rerun it "
                    f"with the same settings to resume, or give a new --id for a new experiment."
                )
        data["config"] = {**config, **old}
        return cls(directory, data)

    @classmethod
    def read(cls, directory: Path) -> ExperimentState | None:
        """An existing experiment's state (for viewers), or None."""
        data = read_json(Path(directory) / STATE_FILE)
        return cls(Path(directory), data) if data else None

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.path, self.data)

    # -- steps
    def get(self, name: str) -> dict[str, Any]:
        return dict(self.steps.get(name) or {})

    def is_done(self, name: str) -> bool:
        return self.steps.get(name, {}).get("state") == "done"

    def started(self, name: str, job: str) -> None:
        self.steps[name] = {"state": "started", "job": job, "started": time.time()}
        self.save()

    def done(self, name: str, **info: Any) -> dict[str, Any]:
        record = {**self.steps.get(name, {}), **info, "state": "done", "finished": time.time()}
        self.steps[name] = record
        self.save()
        return record

    def forget(self, name: str) -> None:
        """Drop a step whose products are gone, so it is done again."""
        if self.steps.pop(name, None) is not None:
            self.save()


def stored_config(workspace: str | Path | None, exp_id: str, study: str, settings_cls: type) -> dict[str, Any] | None:
    """The settings an experiment was started with (those `settings_cls` has), or None when there
    is no such experiment of that study yet."""
    import dataclasses

    if workspace is None:
        return None
    state = ExperimentState.read(experiment_dir(workspace, exp_id))
    if state is None or state.data.get("study") != study:
        return None
    names = {f.name for f in dataclasses.fields(settings_cls)}
    return {k: v for k, v in (state.data.get("config") or {}).items() if k in names}
