"""The work of a job of kind "dataset": build one DatasetSpec of a session, reporting progress.

Job spec (see sessions.jobs): `session` (path of the session TOML), `dataset` (the id of a
DatasetSpec in it) and optionally `size` (overrides the spec's size for this job only). The worker reads the session as it is on disk when the job starts, builds
into the session's workspace and never writes the session file itself (a TUI may have it open);
the statistics go beside the data as `<id>.stats.json` and, in short, into the job's events.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.jobs import JobReporter

KIND = "dataset"


def job_spec(session_path: str | Path, dataset_id: str) -> dict[str, Any]:
    """What `sessions.jobs.create_job(workspace, "dataset", ...)` needs to build one dataset."""
    return {"session": str(Path(session_path).resolve()), "dataset": dataset_id}


def run(job: JobReporter) -> None:
    from sessions.store import SessionFile
    from trainers.dataset_build import build_dataset

    spec = job.spec
    session_path = spec.get("session")
    dataset_id = spec.get("dataset")
    if not session_path or not dataset_id:
        job.fail("The dataset job's spec needs 'session' (a session file) and 'dataset' (a dataset id).")
    sf = SessionFile.load(session_path)
    ds = sf.session.dataset(dataset_id)
    if ds is None:
        known = ", ".join(d.id for d in sf.session.datasets) or "none"
        job.fail(f"Session {sf.path} has no dataset {dataset_id!r} (it has: {known}); save the dataset spec first.")
    if spec.get("size"):  # a one-off size (the demo's --quick), frozen in this job's spec
        from dataclasses import replace

        ds = replace(ds, size=int(spec["size"]))
    if spec.get("strict"):  # `persona-tui data --strict`: refuse an import with any broken row
        from dataclasses import replace

        ds = replace(ds, extra={**ds.extra, "strict": True})
    from dataclasses import asdict

    from engines.models import resolve_model
    from sessions.manifest import write_manifest

    teacher = sf.session.engine(ds.engine) if ds.engine else None
    write_manifest(job, models={"teacher": teacher.model} if teacher else {}, resolve=resolve_model, seed=ds.seed,
                   datasets={"session": sf.path, "source": ds.source and (sf.path.parent / ds.source)},
                   settings={**spec, "dataset": asdict(ds)})
    job.log(f"building dataset {ds.id!r}: format {ds.format}, generator {ds.generator}, size {ds.size}")
    job.progress(0, max(ds.size, 1), "starting")

    def progress(done: int, total: int, message: str = "") -> None:
        job.progress(done, total, message)

    try:
        result = build_dataset(
            sf.session, ds, sf.workspace, base_dir=sf.path.parent, progress=progress,
            cancelled=lambda: job.cancelled, log=job.log, work_dir=job.dir,
        )
    except Exception:
        job.raise_if_cancelled()  # a build stopped by cancel ends "cancelled", not "failed"
        raise
    job.raise_if_cancelled()
    st = result.stats
    summary = {k: st.get(k) for k in ("count", "train", "heldout", "near_duplicates_removed",
                                       "exact_duplicates_removed", "malformed", "skipped", "distinct_2",
                                       "examples_per_s", "seconds")}
    gen = st.get("generation", {})
    for key in ("teacher_tokens_per_s", "teacher_prompt_tokens", "teacher_output_tokens", "cost", "resumed_replies"):
        if gen.get(key) is not None:
            summary[key] = gen[key]
    job.event(event="dataset_built", dataset=ds.id, path=str(result.train_path),
              stats_path=str(result.stats_path), **summary)
    job.log(f"wrote {st['train']} training and {st['heldout']} held-out examples to {result.train_path}")
    if st.get("shortfall"):
        job.log(st["shortfall"])
    job.progress(st["count"], st["count"], "done" if not st.get("shortfall") else st["shortfall"])
