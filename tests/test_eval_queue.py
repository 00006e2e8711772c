"""The queue parent job (evaluators.evaluate.queue) with real detached workers: children run in order,
a failing one does not stop the next, and cancelling the queue from the CLI stops the running
child and the ones not started. Children here are tests/jobs_fixture_worker.py jobs (the queue
starts any queued job); the Evaluate pane's test runs real eval jobs through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluators.evaluate.queue import children_of, create_queue_job, unrecorded_results
from sessions.demo import demo_session
from sessions.model import EvalSpec
from sessions.store import SessionFile
from supervisor import jobs

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _worker_importable(monkeypatch):
    """Detached workers inherit the environment: let them import the fixture worker."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), path) if p))


def _session(tmp_path: Path) -> SessionFile:
    return SessionFile.create(tmp_path / "s.toml", demo_session())


def _child(workspace: Path, kind: str, **spec) -> Path:
    return jobs.create_job(workspace, kind, spec, worker="jobs_fixture_worker")


def _wait(job_dir: Path, timeout: float = 120) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.read_status(job_dir)
        if status.terminal:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_dir.name} did not end in {timeout:g} s:\n{jobs.log_tail(job_dir, 30)}")
        time.sleep(0.1)


def test_children_run_in_order_and_a_failure_does_not_stop_the_next(tmp_path):
    sf = _session(tmp_path)
    a = _child(sf.workspace, "count", n=3, delay=0.02)
    b = _child(sf.workspace, "boom", message="the data file is gone")
    c = _child(sf.workspace, "count", n=2, delay=0.02)
    queue = create_queue_job(sf.workspace, sf.path, [("ev-a", a), ("ev-b", b), ("ev-c", c)])
    jobs.start_job(queue)
    status = _wait(queue)
    assert status.state == "finished", status.error + jobs.log_tail(queue)
    assert (status.done, status.total) == (3, 3) and status.message == "1 failed, 2 finished"
    assert [jobs.read_status(d).state for d in (a, b, c)] == ["finished", "failed", "finished"]
    # In order: each child started after the one before it ended.
    assert jobs.read_status(b).started >= jobs.read_status(a).ended
    assert jobs.read_status(c).started >= jobs.read_status(b).ended
    events, _ = jobs.read_events(queue)
    flow = [(e["event"], e["eval"]) for e in events if e.get("event", "").startswith("child_")]
    assert flow == [
        ("child_started", "ev-a"),
        ("child_ended", "ev-a"),
        ("child_started", "ev-b"),
        ("child_ended", "ev-b"),
        ("child_started", "ev-c"),
        ("child_ended", "ev-c"),
    ]
    failed = next(e for e in events if e.get("event") == "child_ended" and e["eval"] == "ev-b")
    assert failed["state"] == "failed" and failed["error"] == "the data file is gone"
    assert children_of(queue) == [
        {"eval": "ev-a", "job": a.name},
        {"eval": "ev-b", "job": b.name},
        {"eval": "ev-c", "job": c.name},
    ]
    assert not (queue / jobs.CHILDREN_FILE).exists()  # no group left to kill
    # A child runs 10 below this process, as any job does: not 10 more below its parent's worker.
    child_events, _ = jobs.read_events(a)
    process = next(e for e in child_events if e.get("event") == "process")
    assert process["nice"] == min(19, os.nice(0) + jobs.DEFAULT_NICE)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
        stdin=subprocess.DEVNULL,
    )


def test_jobs_lists_the_queue_and_cancel_stops_the_running_child_and_the_rest(tmp_path):
    sf = _session(tmp_path)
    slow = _child(sf.workspace, "count", n=100000, delay=0.05)
    never = _child(sf.workspace, "count", n=1, delay=0.0)
    queue = create_queue_job(sf.workspace, sf.path, [("ev-slow", slow), ("ev-never", never)])
    jobs.start_job(queue)
    deadline = time.monotonic() + 60
    while jobs.read_status(slow).state != "running" or jobs.read_status(queue).state != "running":
        assert time.monotonic() < deadline, jobs.log_tail(queue)
        time.sleep(0.1)
    listed = _cli("jobs", str(sf.path))
    assert listed.returncode == 0 and "eval_queue" in listed.stdout and queue.name in listed.stdout
    done = _cli("jobs", str(sf.path), "--cancel", queue.name)
    assert done.returncode == 0 and "cancel requested" in done.stdout
    assert _wait(queue).state == "cancelled"
    assert jobs.read_status(slow).state == "cancelled"  # the running child was told to stop
    never_status = jobs.read_status(never)
    assert never_status.state == "cancelled" and never_status.pid is None  # and the rest never started


def test_unrecorded_results_names_finished_children_the_session_lacks(tmp_path):
    sf = _session(tmp_path)
    sf.session.evals.append(EvalSpec(id="ev", kind="judge", models=["base"]))
    done = jobs.create_job(sf.workspace, "eval", {"eval": "ev"}, worker="evaluators.worker")

    def work(job):
        (job.dir / "scores.json").write_text('{"kind": "judge", "pairs": []}')

    assert jobs.run_job_inline(done, {"eval": work}).state == "finished"
    other = jobs.create_job(sf.workspace, "eval", {"eval": "gone"}, worker="evaluators.worker")  # no such eval
    create_queue_job(sf.workspace, sf.path, [("ev", done), ("gone", other)])
    assert [(e, d.name) for e, d in unrecorded_results(sf.session, sf.workspace)] == [("ev", done.name)]
    sf.session.evals[-1].extra["results"] = [{"job": done.name}]
    assert unrecorded_results(sf.session, sf.workspace) == []
