"""Which engine a trained run is, for evaluations: `base`, `run:<id>` and `job:<train job id>`.

An EvalSpec's `models` may name these besides engine ids and model paths (see
evaluators.eval_spec); `run_resolver` is the `resolve` callable that turns them into engines:

    base          the runs' base model through transformers (the same weights and code path the
                  runs are scored with, so base and runs differ only by the adapter)
    run:<id>      the newest finished training job of run <id>: its adapter on its base model
    job:<job id>  that training job's adapter on its base model

`pinned` maps a run id to one training job, so an experiment scores exactly the jobs it trained
even if the run is trained again later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sessions.model import EngineSpec, Session

BASE = "base"
RUN_PREFIX = "run:"
JOB_PREFIX = "job:"
DEFAULT_BASE_MODEL = "bundled:smollm2-135m-instruct"


def base_model_of(session: Session) -> str:
    """The base model the session's runs share (the first run's), else the bundled model."""
    return session.runs[0].base_model if session.runs else DEFAULT_BASE_MODEL


def base_engine(model: str, label: str = BASE) -> EngineSpec:
    return EngineSpec(id=label, kind="transformers", model=model)


def job_engine(workspace: Path, job_id: str, label: str = "") -> EngineSpec:
    """A finished training job's adapter on its base model (transformers)."""
    from trainers.export_job import resolve_source

    source = resolve_source({"train_job": job_id}, Path(workspace))
    return EngineSpec(id=label or f"{JOB_PREFIX}{job_id}", kind="transformers",
                      model=source["base_model"], adapter=source["adapter"])


def run_engine(workspace: Path, run_id: str, label: str = "") -> EngineSpec:
    """The newest finished training job of `run_id` with an adapter (ValueError when none)."""
    from trainers.export_job import find_train_job
    from trainers.train_job import remote_engine, remote_engine_spec

    remote = remote_engine(Path(workspace), run_id)
    if remote is not None:  # the openai backend's fine-tuned model, not a local adapter
        return remote_engine_spec(remote, label or f"{RUN_PREFIX}{run_id}")
    job_dir = find_train_job(Path(workspace), run_id)
    return job_engine(workspace, job_dir.name, label or f"{RUN_PREFIX}{run_id}")


def run_resolver(session: Session, workspace: Path, pinned: Mapping[str, str] | None = None,
                 base_model: str | None = None) -> Callable[[str], EngineSpec | None]:
    """The `resolve` callable for evaluators.eval_spec: None for refs it does not know."""
    pinned = dict(pinned or {})

    def resolve(ref: str) -> EngineSpec | None:
        if ref == BASE:
            return base_engine(base_model or base_model_of(session))
        if ref.startswith(RUN_PREFIX):
            run_id = ref[len(RUN_PREFIX):]
            if run_id in pinned:
                return job_engine(workspace, pinned[run_id], ref)
            return run_engine(workspace, run_id, ref)
        if ref.startswith(JOB_PREFIX):
            return job_engine(workspace, ref[len(JOB_PREFIX):], ref)
        return None

    return resolve


def finished_train_jobs(workspace: Path) -> list[tuple[str, str]]:
    """(job id, run id) of every finished training job that left an adapter, oldest first."""
    from sessions import jobs

    out = []
    if not Path(workspace).is_dir():
        return out
    for status in jobs.list_jobs(workspace):
        if status.kind == "train" and status.state == "finished" and \
                (status.dir / "adapter" / "adapter_config.json").is_file():
            try:
                run = jobs.read_spec(status.dir).get("run")
            except ValueError:
                continue
            out.append((status.id, str(run.get("id", "")) if isinstance(run, dict) else ""))
    return out
