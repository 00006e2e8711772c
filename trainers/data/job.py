"""The work of a job of kind "dataset": build one DatasetSpec of a session, reporting progress.

Job spec (see supervisor.jobs): `session` (path of the session TOML: where relative sources start,
and what the manifest names), `dataset` (the id of a DatasetSpec) and `frozen`: the inputs as they
were when the job was created (the dataset spec, the persona, the session's engines, the specs
of a mix's parts, the base model whose tokenizer measures the examples). So a build is what the
person saw when they pressed build, the session need not be saved first, and editing the session
while the job runs changes nothing in it, as with train and eval jobs. Optional: `size`
(overrides the spec's size for this job only) and `strict`. A spec without `frozen` (a hand-made
one) reads the session from disk when the worker starts. The worker builds into the session's
workspace and never writes the session file itself (a TUI may have it open); the statistics go
beside the data as `<id>.stats.json` and, in short, into the job's events.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.jobs import JobReporter

KIND = "dataset"


def _session_file(session: Any) -> Any:
    """A `SessionFile` as given, or loaded from a path."""
    if hasattr(session, "session") and hasattr(session, "path"):
        return session
    from sessions.store import SessionFile

    return SessionFile.load(session)


def frozen_inputs(session: Any, dataset_id: str) -> dict[str, Any]:
    """What of `session` (a `sessions.model.Session`) a build of `dataset_id` reads, as plain data.

    Raises ValueError (one sentence) when the session has no such dataset.
    """
    from sessions import codec
    from trainers.data.build import base_model_for

    ds = session.dataset(dataset_id)
    if ds is None:
        known = ", ".join(d.id for d in session.datasets) or "none"
        raise ValueError(f"the session has no dataset {dataset_id!r} (it has: {known}); add the dataset spec first.")
    parts = [p for p in (session.dataset(i) for i in ds.mix) if p is not None]
    persona = session.persona(ds.persona) if ds.persona else None
    return {
        "datasets": [codec.to_plain(d) for d in (ds, *parts)],
        "personas": [codec.to_plain(persona)] if persona is not None else [],
        "engines": [codec.to_plain(e) for e in session.engines],
        "base_model": base_model_for(session, ds),
    }


def job_spec(session: Any, dataset_id: str) -> dict[str, Any]:
    """What `supervisor.jobs.create_job(workspace, "dataset", ...)` needs to build one dataset.

    `session`: a `SessionFile` (its session as it is in memory now, saved or not) or the path of
    a session file (read now). Either way the inputs are frozen into the job's spec here.
    """
    sf = _session_file(session)
    return {
        "session": str(Path(sf.path).resolve()),
        "dataset": dataset_id,
        "frozen": frozen_inputs(sf.session, dataset_id),
    }


def _thaw(frozen: dict[str, Any], dataset_id: str) -> tuple[Any, Any]:
    """The (Session, DatasetSpec) a frozen spec describes; JobFailed naming the field when broken."""
    from sessions import codec
    from sessions.model import Session
    from supervisor.jobs import JobFailed

    problems: list = []
    plain = {k: frozen.get(k) or [] for k in ("personas", "engines", "datasets")}
    session = codec.decode(Session, plain, ("frozen",), problems)
    if problems:
        keys, message = problems[0]
        where = ".".join(str(k) for k in keys)
        raise JobFailed(f"the job's spec.toml has a broken {where} ({message.rstrip('.')}); create the job again.")
    ds = session.dataset(dataset_id)
    if ds is None:
        raise JobFailed(f"the job's spec.toml freezes no dataset {dataset_id!r}; create the job again.")
    if frozen.get("base_model") and not ds.extra.get("base_model"):
        from dataclasses import replace

        ds = replace(ds, extra={**ds.extra, "base_model": frozen["base_model"]})
    return session, ds


def run(job: JobReporter) -> None:
    from sessions.store import SessionFile
    from sessions.workspace import workspace_for
    from trainers.data.build import build_dataset

    spec = job.spec
    session_path = spec.get("session")
    dataset_id = spec.get("dataset")
    if not session_path or not dataset_id:
        job.fail("The dataset job's spec needs 'session' (a session file) and 'dataset' (a dataset id).")
    session_path = Path(session_path)
    if isinstance(spec.get("frozen"), dict):
        session, ds = _thaw(spec["frozen"], dataset_id)
    else:
        sf = SessionFile.load(session_path)
        session, session_path = sf.session, sf.path
        ds = session.dataset(dataset_id)
        if ds is None:
            known = ", ".join(d.id for d in session.datasets) or "none"
            job.fail(f"Session {sf.path} has no dataset {dataset_id!r} (it has: {known}); save the dataset spec first.")
    workspace = workspace_for(session_path)
    if spec.get("size"):  # a one-off size (the demo's --quick), frozen in this job's spec
        from dataclasses import replace

        ds = replace(ds, size=int(spec["size"]))
    if spec.get("strict"):  # `persona-tui data --strict`: refuse an import with any broken row
        from dataclasses import replace

        ds = replace(ds, extra={**ds.extra, "strict": True})
    from dataclasses import asdict

    from engines.models import resolve_model
    from sessions.manifest import write_manifest

    teacher = session.engine(ds.engine) if ds.engine else None
    write_manifest(
        job,
        models={"teacher": teacher.model} if teacher else {},
        resolve=resolve_model,
        seed=ds.seed,
        datasets={"session": session_path, "source": ds.source and (session_path.parent / ds.source)},
        settings={**spec, "dataset": asdict(ds)},
    )
    job.log(f"building dataset {ds.id!r}: format {ds.format}, generator {ds.generator}, size {ds.size}")
    job.progress(0, max(ds.size, 1), "starting")

    def progress(done: int, total: int, message: str = "") -> None:
        job.progress(done, total, message)

    try:
        result = build_dataset(
            session,
            ds,
            workspace,
            base_dir=session_path.parent,
            progress=progress,
            cancelled=lambda: job.cancelled,
            log=job.log,
            work_dir=job.dir,
        )
    except Exception:
        job.raise_if_cancelled()  # a build stopped by cancel ends "cancelled", not "failed"
        raise
    job.raise_if_cancelled()
    st = result.stats
    summary = {
        k: st.get(k)
        for k in (
            "count",
            "train",
            "heldout",
            "near_duplicates_removed",
            "exact_duplicates_removed",
            "malformed",
            "skipped",
            "distinct_2",
            "examples_per_s",
            "seconds",
        )
    }
    gen = st.get("generation", {})
    for key in ("teacher_tokens_per_s", "teacher_prompt_tokens", "teacher_output_tokens", "cost", "resumed_replies"):
        if gen.get(key) is not None:
            summary[key] = gen[key]
    job.event(
        event="dataset_built", dataset=ds.id, path=str(result.train_path), stats_path=str(result.stats_path), **summary
    )
    job.log(f"wrote {st['train']} training and {st['heldout']} held-out examples to {result.train_path}")
    if st.get("shortfall"):
        job.log(st["shortfall"])
    job.progress(st["count"], st["count"], "done" if not st.get("shortfall") else st["shortfall"])
