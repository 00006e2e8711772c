"""A tiny session for the tests/test_experiment_*.py and tests/test_evaluate_pane*.py files (not a
test module): the demo persona cut to two traits with two probes of each kind, and a run spec
that trains in seconds."""

from __future__ import annotations

from pathlib import Path

from conftest import SHARED_DATA as DATA  # noqa: F401  (the shared data, found relative to the checkout)
from conftest import SPC_VALID as SPC  # noqa: F401  (re-exported to the experiment tests)
from conftest import TAILORING_DIR, needs_spc, needs_tailoring  # noqa: F401  (re-exported to the experiment tests)
from sessions.demo import demo_session
from sessions.model import DatasetSpec, RunSpec
from sessions.store import SessionFile


def tiny_training(run: RunSpec, steps: int = 2) -> RunSpec:
    t = run.training
    t.max_steps, t.batch_size, t.grad_accum, t.warmup_steps = steps, 2, 1, 0
    t.learning_rate, t.eval_steps, t.save_steps, t.max_seq_length = 1e-3, 0, steps, 128
    return run


def tiny_session(
    root: Path, name: str = "s.toml", traits: int = 2, probes: int = 2, exp_id: str = "odile-fc"
) -> SessionFile:
    """The demo persona, small; the chat-demos run of the format comparison made tiny (the
    experiment copies its settings to the other formats)."""
    s = demo_session()
    s.datasets, s.runs, s.evals = [], [], []
    persona = s.personas[0]
    persona.traits = persona.traits[:traits]
    for t in persona.traits:
        t.knowledge_probes = t.knowledge_probes[:probes]
        t.expression_probes = t.expression_probes[:probes]
    s.datasets.append(DatasetSpec(id=f"{exp_id}-chat_demos", format="chat_demos", persona=persona.id, size=12))
    s.runs.append(tiny_training(RunSpec(id=f"{exp_id}-chat_demos", datasets=[f"{exp_id}-chat_demos"])))
    return SessionFile.create(root / name, s)
