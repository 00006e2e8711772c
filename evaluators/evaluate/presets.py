"""What an evaluation started from the app begins with: the kinds it offers, the models it can
score, and a first evaluation of each kind with settings for a first look (`new_eval_spec`).

The Evaluate pane lists these and adds the EvalSpec to the session; the CLI's `eval` command takes
specs written by hand. Kept here, not in the pane, so they are core logic tested without the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.models import DEFAULT_MODEL
from sessions.model import EvalSpec, Session
from sessions.workspace import make_id

# (choice value, label): what "r" can run. judge-fallback is a judge evaluation by the
# judge-free fallback (MiniLM similarity), for a machine with no judge worth trusting.
KINDS = [
    ("traits", "knows vs shows, per trait"),
    ("perplexity_matrix", "perplexity on held-out data"),
    ("judge", "judge: win rate vs first model"),
    ("judge-fallback", "judge, fallback (no LLM)"),
    ("reference", "reference metrics (chat data)"),
    ("drift", "persona drift over a conversation"),
]


def model_choices(session: Session, workspace: Path) -> list[tuple[str, str]]:
    """(model entry, label): the base model, the session's engines, each finished training job."""
    from evaluators.run_models import BASE, JOB_PREFIX, base_model_of, finished_train_jobs

    out = [(BASE, f"base ({base_model_of(session).removeprefix('bundled:')})")]
    out += [(e.id, f"engine {e.id} ({e.kind})") for e in session.engines]
    for job_id, run_id in reversed(finished_train_jobs(workspace)):
        out.append((f"{JOB_PREFIX}{job_id}", f"{run_id or 'run'} · {job_id[-13:]}"))
    return out


def heldout_datasets(session: Session, workspace: Path, formats: tuple[str, ...] | None = None) -> list[str]:
    from trainers.data import reader as data_reader

    return [
        d.id
        for d in session.datasets
        if (not formats or d.format in formats) and data_reader.has_records(workspace, d.id, "heldout")
    ]


def new_eval_spec(kind: str, models: list[str], session: Session, workspace: Path, persona: str) -> EvalSpec:
    """An evaluation of `kind` on `models` with settings for a first look; ValueError (one
    sentence) when it cannot run in this session yet."""
    taken = [e.id for e in session.evals]
    if not models:
        raise ValueError("no model is selected; pick at least one in the Models list (space toggles).")
    extra: dict[str, Any]
    real_kind = kind
    if kind == "traits":
        extra = {"persona": persona, "samples": 2, "max_tokens": 64, "labeller": "fallback"}
    elif kind == "perplexity_matrix":
        data = heldout_datasets(session, workspace)
        if not data:
            raise ValueError("no dataset has held-out examples yet; build one in the Data tab first.")
        extra = {"data": data[:6], "samples": 20}
    elif kind in ("judge", "judge-fallback"):
        if len(models) < 2:
            raise ValueError("a judge compares models: select at least two (the first is the baseline).")
        real_kind = "judge"
        if kind == "judge":
            judge = session.engines[0].id if session.engines else DEFAULT_MODEL
            extra = {"persona": persona, "judge": judge, "limit": 5, "criteria": ["persona", "quality"]}
        else:
            extra = {"persona": persona, "judge": "fallback", "limit": 5, "criteria": ["persona"]}
    elif kind == "reference":
        data = heldout_datasets(session, workspace, ("persona_chat", "chat_demos"))
        if not data:
            raise ValueError(
                "reference metrics need held-out chat data; build a persona_chat or chat_demos dataset first."
            )
        extra = {"data": data[0], "samples": 20, "max_tokens": 48}
    elif kind == "drift":
        spc = [d.id for d in session.datasets if d.format == "persona_chat" and d.source]
        if not spc:
            raise ValueError(
                "drift replays Synthetic-Persona-Chat conversations; import a persona_chat "
                "dataset in the Data tab first."
            )
        extra = {"persona": persona, "data": spc[0], "turns": 8, "conversations": 1, "probes": 1, "max_tokens": 48}
    else:
        raise ValueError(f"{kind!r} is not an evaluation this pane runs.")
    eval_id = make_id(f"eval {kind}", taken, fallback="eval")
    return EvalSpec(id=eval_id, kind=real_kind, models=list(models), extra=extra)
