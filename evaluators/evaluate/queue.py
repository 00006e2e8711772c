"""A queue of evaluations as one parent job (kind "eval_queue"), so it outlives the app.

The Evaluate pane creates one eval job per evaluation (each frozen as `create_eval_job` does),
then one queue job naming them in order:

    children = [(eval_id, create_eval_job(session_file, eval_id, resolve)) for eval_id in ids]
    queue_dir = create_queue_job(session_file.workspace, session_file.path, children)
    jobs.start_job(queue_dir)              # python -m evaluators.worker <queue_dir>

Its worker starts each child when the one before it has ended and follows it by its files: the
queue's progress is `i + the child's fraction` of `n`, its message names the child, and its
events say `child_started` / `child_ended` (with `eval`, `job`, `state`, `error`). Quit the app
and the queue goes on; reopen it and the pane follows the queue again. Cancelling the queue
cancels the running child and marks the ones not started cancelled; a child that fails does not
stop the ones after it. A parent job never writes the session file (a TUI may have it open):
whoever has the session open records the finished children's summaries
(`unrecorded_results` + `result_entry`), at the end of the queue or when it next opens.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor import jobs

KIND = "eval_queue"
WORKER = "evaluators.worker"
POLL_S = 0.3
# Kinds of parent jobs whose eval children have their summaries recorded in the session.
PARENT_KINDS = ("eval_queue", "experiment")


def create_queue_job(workspace: str | Path, session_path: str | Path, children: Iterable[tuple[str, Path]]) -> Path:
    """A queued parent job that will run the (queued) eval jobs `children` in order."""
    listed = [{"eval": str(eval_id), "job": Path(job_dir).name} for eval_id, job_dir in children]
    if not listed:
        raise jobs.JobError("a queue of evaluations needs at least one eval job; create them first.")
    return jobs.create_job(
        workspace, KIND, {"session": str(Path(session_path).resolve()), "children": listed}, worker=WORKER
    )


def child_nice() -> int:
    """How much a parent lowers its children's priority: to the usual +10 in all, since they
    inherit the parent's (a worker already at +10 adds nothing)."""
    import os

    return max(0, jobs.DEFAULT_NICE - os.nice(0))


def _wait(job: Any, child_dir: Path, label: str, index: int, n: int) -> jobs.JobStatus:
    """Follow one child until it ends, mirroring its progress into the queue's status."""
    asked_to_cancel = False
    while True:
        status = jobs.read_status(child_dir)
        frac = status.fraction or 0.0
        note = f"{label} ({index + 1}/{n}): {status.state}" + (f" · {status.message}" if status.message else "")
        job.progress(index + (1.0 if status.terminal else frac), n, note[:160])
        if status.terminal:
            return status
        if job.cancelled and not asked_to_cancel:
            jobs.cancel_job(child_dir)
            asked_to_cancel = True
        time.sleep(POLL_S)


def run(job: Any) -> None:
    """The queue's work: start each child in turn, follow it, say how it ended."""
    children = job.spec.get("children") or []
    if not isinstance(children, list) or not children:
        job.fail("the queue's spec.toml lists no children; create it with create_queue_job.")
    root = job.dir.parent
    n = len(children)
    job.progress(0, n, f"{n} evaluation(s) queued")
    ended: dict[str, int] = {}
    for i, child in enumerate(children):
        label, child_dir = str(child.get("eval") or child.get("job")), root / str(child.get("job"))
        try:
            status = jobs.read_status(child_dir)
        except jobs.JobError as e:
            job.log(f"{label}: {e}")
            job.event(event="child_ended", index=i, eval=label, job=child_dir.name, state="failed", error=str(e))
            ended["failed"] = ended.get("failed", 0) + 1
            continue
        if job.cancelled and status.state == "queued" and not status.pid:
            jobs.cancel_job(child_dir)  # never launched: marked cancelled at once
            status = jobs.read_status(child_dir)
        elif status.state == "queued" and not status.pid:
            pid = jobs.start_job(child_dir, nice=child_nice())
            jobs.register_child_group(job.dir, pid)  # a forced cancel of the queue kills it too
            job.event(event="child_started", index=i, eval=label, job=child_dir.name)
            job.log(f"started {label} (job {child_dir.name})")
            status = _wait(job, child_dir, label, i, n)
            jobs.unregister_child_group(job.dir, pid)
        elif not status.terminal:  # a resumed queue finds a child still running: follow it
            status = _wait(job, child_dir, label, i, n)
        job.event(
            event="child_ended",
            index=i,
            eval=label,
            job=child_dir.name,
            state=status.state,
            **({"error": status.error.splitlines()[0]} if status.error else {}),
        )
        job.log(f"{label}: {status.state}" + (f": {status.error.splitlines()[0]}" if status.error else ""))
        ended[status.state] = ended.get(status.state, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(ended.items()))
    job.progress(n, n, summary)
    job.raise_if_cancelled()


# ----------------------------------------------------------------------------- the readers


def children_of(parent_dir: str | Path) -> list[dict[str, str]]:
    """The eval jobs a parent started or will start: `{"eval": id, "job": job id}`, in order.

    A queue lists them in its spec; an experiment says so in `child_ended` events as it goes.
    """
    parent_dir = Path(parent_dir)
    out: dict[str, dict[str, str]] = {}
    try:
        spec = jobs.read_spec(parent_dir)
    except jobs.JobError:
        return []
    for c in spec.get("children") or []:
        if isinstance(c, dict) and c.get("job"):
            out[str(c["job"])] = {"eval": str(c.get("eval") or ""), "job": str(c["job"])}
    events, _ = jobs.read_events(parent_dir)
    for e in events:
        if e.get("event") in ("child_started", "child_ended") and e.get("job") and e.get("eval"):
            out.setdefault(str(e["job"]), {"eval": str(e["eval"]), "job": str(e["job"])})
    return list(out.values())


def result_entry(job_dir: str | Path, scores: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation's `results` keeps of one finished job: its summary, no nulls."""
    from evaluators.evaluate.reader import drop_nulls, summary

    return {
        "job": Path(job_dir).name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "partial": bool(scores.get("partial")),
        "summary": drop_nulls(summary(scores)),
    }


def unrecorded_results(session: Any, workspace: str | Path) -> list[tuple[str, Path]]:
    """(eval id, job folder) of every finished eval job started by a queue or an experiment whose
    summary the session's evaluation does not hold yet (the app was closed when it ended)."""
    from evaluators.evaluate.reader import SCORES_FILE

    recorded = {str(r.get("job")) for e in session.evals for r in (e.extra.get("results") or []) if isinstance(r, dict)}
    evals = {e.id for e in session.evals}
    root = jobs.jobs_root(workspace)
    out = []
    for parent in jobs.list_jobs(workspace):
        if parent.kind not in PARENT_KINDS:
            continue
        for child in children_of(parent.dir):
            child_dir = root / child["job"]
            if child["job"] in recorded or child["eval"] not in evals or not (child_dir / SCORES_FILE).is_file():
                continue
            try:
                if jobs.read_status(child_dir).state != "finished":
                    continue
            except jobs.JobError:
                continue
            out.append((child["eval"], child_dir))
            recorded.add(child["job"])
    return out
