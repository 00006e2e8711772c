"""Training backends behind one small lifecycle: setup / train / save_checkpoint / cleanup.

Like torchtune's recipes, a backend is an object that follows the protocol, built by composing
parts (a model source, `hf.TrainerDriver`, `trainers.train.metrics`), never by inheriting from another
backend. `hf` trains with transformers + peft + TRL on a CPU or GPUs; `unsloth` loads the model
through unsloth's FastLanguageModel and then drives the same TRL trainer; `openai` uploads the
data to the fine-tuning API and polls the remote job. Each backend module is imported only when
its backend is chosen, and offers `check(run) -> list[str]`: what this machine cannot do.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sessions.run_spec import validate_run
from trainers.train.reader import ADAPTER_DIR, CHECKPOINTS_DIR

if TYPE_CHECKING:
    from sessions.model import RunSpec, Session
    from trainers.train.metrics import Reporter
    from trainers.train.run_data import DatasetFile

# backend name -> module holding `Backend` (the class) and `check(run)`.
BACKEND_MODULES = {
    "hf": "trainers.train.backends.hf",
    "unsloth": "trainers.train.backends.unsloth_backend",
    "openai": "trainers.train.backends.openai_ft",
}

CANCEL_FILE = "cancel.request"  # seen by every rank of a multi-GPU run, not only the signalled one


class RunError(ValueError):
    """A run cannot go on; the message is one sentence naming the cause and the fix."""


@dataclass
class TrainContext:
    """Everything a backend needs: the frozen run, its data, where to write, how to report."""

    job: Reporter
    job_dir: Path
    run: RunSpec
    datasets: list[DatasetFile]
    resume_from: Path | None = None  # a checkpoint folder to continue from
    elapsed_before: float = 0.0  # seconds trained by earlier attempts of this job
    rank: int = 0  # process rank under `accelerate launch` (0 writes events and products)

    @property
    def checkpoints_dir(self) -> Path:
        return self.job_dir / CHECKPOINTS_DIR

    @property
    def adapter_dir(self) -> Path:
        return self.job_dir / ADAPTER_DIR

    def should_stop(self) -> bool:
        return bool(self.job.cancelled) or (self.job_dir / CANCEL_FILE).exists()


@dataclass
class TrainOutcome:
    """How `train()` ended and what it made."""

    state: str  # "finished" | "cancelled"
    step: int = 0
    adapter: str = ""  # folder of the final PEFT adapter (finished local runs)
    engine: dict[str, Any] = field(default_factory=dict)  # an EngineSpec-shaped dict for the result
    summary: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """The lifecycle every backend follows (torchtune's recipe protocol)."""

    name: str

    def setup(self, ctx: TrainContext) -> None:
        """Load the model and data and build the trainer; raise RunError for bad input."""

    def train(self) -> TrainOutcome:
        """Train until done or cancelled (a cancelled run has saved a checkpoint first)."""

    def save_checkpoint(self) -> Path | None:
        """Save a resumable checkpoint of the current step now (None when there is nothing to save)."""

    def cleanup(self) -> None:
        """Free memory and temporary files; safe to call after a failure in any step."""


def backend_module(name: str) -> Any:
    if name not in BACKEND_MODULES:
        raise RunError(f"backend {name!r} is unknown; choose one of {', '.join(BACKEND_MODULES)}.")
    return importlib.import_module(BACKEND_MODULES[name])


def open_backend(name: str) -> Backend:
    return backend_module(name).Backend()


def check_machine(run: RunSpec) -> list[str]:
    """What this machine cannot do of the run's settings (a GPU for unsloth, CUDA for 8-bit Adam)."""
    if run.backend not in BACKEND_MODULES:
        return []
    name = f"run {run.id!r}"
    return [f"{name}: {p}" for p in backend_module(run.backend).check(run)]


def validate(run: RunSpec, session: Session) -> list[str]:
    """All problems of a run: its settings (sessions.run_spec) and this machine (the backend)."""
    problems = validate_run(run, session)
    if not problems:
        problems = check_machine(run)
    return problems
