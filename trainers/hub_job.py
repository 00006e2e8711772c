"""Hub downloads as jobs: kind "hub_pull", and the worker `python -m trainers.hub_job <job-dir>`.

A pull of a base model (`persona-tui models pull`) or of a study's data (`persona-tui data pull`)
is long work like training: a detached worker in the job protocol of `supervisor.jobs`, progress in
bytes, cancel by SIGTERM (the file being written is dropped, finished ones stay), resume by
requeueing the same job or pulling again. The download itself is `engines.hub`.

Spec fields: repo_id, repo_type ("model" | "dataset"), revision (optional).
Jobs without a session live in the workbench's own workspace, `hub_workspace()`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engines.hub import HubError, PullStopped, plan_pull, pull
from engines.models import ModelChoice, cache_root, list_models
from supervisor import jobs

if TYPE_CHECKING:
    from sessions.model import Session

WORKER = "trainers.hub_job"
KIND = "hub_pull"


def hub_workspace() -> Path:
    """Where pull jobs started outside a session live: `<persona-tui cache>/hub/jobs/<id>/`."""
    return cache_root() / "hub"


def create_pull_job(
    repo_id: str, repo_type: str = "model", revision: str | None = None, workspace: str | os.PathLike[str] | None = None
) -> Path:
    """A queued pull job (start it with `jobs.start_job`, or run it with `run_inline`)."""
    spec = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision or None}
    short = repo_id.rsplit("/", 1)[-1].lower()
    prefix = "".join(c if c.isalnum() else "-" for c in short)[:24].strip("-") or "repo"
    return jobs.create_job(
        workspace or hub_workspace(), KIND, spec, worker=WORKER, job_id=jobs.new_job_id(f"pull-{prefix}")
    )


def available_models(session: Session | None = None) -> list[ModelChoice]:
    """Everything a run of `session` (a sessions.model.Session, or None) can start from: the one
    list `persona-tui models` prints and the Train form's base-model field offers
    (`engines.models.list_models`, fed with the models the session names and its exports)."""
    named: list[str] = []
    exports: list[tuple[str, str]] = []
    if session is not None:
        named += [r.base_model for r in session.runs]
        named += [e.model for e in session.engines if e.kind != "openai" and e.model]
        for r in session.runs:
            for entry in r.extra.get("exports") or []:
                if not entry.get("ok"):
                    continue
                for f in entry.get("files") or []:
                    if f.get("kind") in ("hf", "gguf") and f.get("path"):
                        exports.append(
                            (f["path"], f"run {r.id}, {f.get('type') or f['kind']} ({entry.get('job', '')})")
                        )
    return list_models(named, exports)


def run(job: jobs.JobReporter) -> None:
    """The work of a "hub_pull" job (called with a JobReporter)."""
    spec = job.spec
    repo_id, repo_type = str(spec.get("repo_id", "")), str(spec.get("repo_type", "model"))
    revision = spec.get("revision") or None
    try:
        job.progress(0, None, "asking the Hub")
        plan = plan_pull(repo_id, revision, repo_type)
        job.log(f"{repo_id}@{plan.commit}: {len(plan.files)} files, {plan.total_bytes / 2**20:.1f} MiB")
        job.event(
            event="pull_plan",
            repo_id=repo_id,
            repo_type=repo_type,
            commit=plan.commit,
            files=[p for p, _ in plan.files],
            bytes=plan.total_bytes,
        )

        def on_progress(done: int, total: int, path: str) -> None:
            if job.cancelled:
                raise PullStopped()
            name = path.rsplit("/", 1)[-1]
            job.progress(done, total, f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB {name}".strip())

        folder = pull(plan, on_progress=on_progress, log=job.log)
    except PullStopped:
        job.log("cancelled: the file being written was dropped; finished files are kept")
        return
    except HubError as e:
        job.fail(str(e))
    job.event(event="pulled", repo_id=repo_id, commit=plan.commit, path=str(folder))
    job.progress(plan.total_bytes, plan.total_bytes, "done")
    job.log(f"ready in {folder}")


def run_inline(job_dir: str | os.PathLike[str]) -> jobs.JobStatus:
    return jobs.run_job_inline(job_dir, {KIND: run})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m trainers.hub_job JOB_DIR", file=sys.stderr)
        return 2
    return jobs.run_worker(Path(argv[0]), {KIND: run})


if __name__ == "__main__":
    raise SystemExit(main())
