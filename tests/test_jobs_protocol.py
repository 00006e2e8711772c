"""The job protocol with real detached worker processes (tests/jobs_fixture_worker.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from supervisor import jobs
from waiting import wait_for

TESTS = Path(__file__).resolve().parent
WORKER = "jobs_fixture_worker"
KINDS = {
    "count": "jobs_fixture_worker:count",
    "boom": "jobs_fixture_worker:boom",
    "refuse": "jobs_fixture_worker:refuse",
    "hang": "jobs_fixture_worker:hang",
}


@pytest.fixture(autouse=True)
def _worker_importable(monkeypatch):
    """Detached workers inherit the environment: let them import the fixture worker."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), path) if p))
    monkeypatch.syspath_prepend(str(TESTS))


def finish(job_dir, timeout=120.0):
    """Follow the job with watch() until it ends; return (last status, all events, all statuses)."""
    statuses, events = [], []
    deadline = time.monotonic() + timeout
    for status, new in jobs.watch(job_dir, interval=0.05):
        statuses.append(status)
        events.extend(new)
        assert time.monotonic() < deadline, f"job still {status.state} after {timeout} s"
    return statuses[-1], events, statuses


def test_create_job_writes_the_protocol_files(tmp_path):
    job_dir = jobs.create_job(
        tmp_path, "count", {"n": 3, "note": None, "nested": {"a": [1, 2]}, "path": tmp_path}, worker=WORKER
    )
    assert job_dir.parent == tmp_path / "jobs"
    kind, stamp, time_part, suffix = job_dir.name.split("-")
    assert kind == "count" and len(stamp) == 8 and len(time_part) == 6 and len(suffix) == 4
    assert {p.name for p in job_dir.iterdir()} >= {"spec.toml", "status.json", "events.jsonl", "log.txt"}
    spec = tomllib.loads((job_dir / "spec.toml").read_text())
    assert spec["kind"] == "count" and spec["worker"] == WORKER and spec["id"] == job_dir.name
    assert spec["n"] == 3 and spec["nested"] == {"a": [1, 2]} and spec["path"] == str(tmp_path)
    assert "note" not in spec  # TOML has no null
    status = jobs.read_status(job_dir)
    assert status.state == "queued" and status.pid is None and status.kind == "count"
    assert json.loads((job_dir / "status.json").read_text())["state"] == "queued"


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "", ".", "..", "x\0y", "-lead", "a" * 129])
def test_unsafe_job_ids_are_refused(tmp_path, bad):
    with pytest.raises(jobs.JobError, match="not a safe file name"):
        jobs.create_job(tmp_path, "count", {}, job_id=bad)
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


def test_duplicate_id_and_conflicting_spec_keys_are_refused(tmp_path):
    jobs.create_job(tmp_path, "count", {"n": 1}, job_id="j1")
    with pytest.raises(jobs.JobError, match="'j1' already exists"):
        jobs.create_job(tmp_path, "count", {"n": 1}, job_id="j1")
    with pytest.raises(jobs.JobError, match="spec field 'kind'"):
        jobs.create_job(tmp_path, "count", {"kind": "train"}, job_id="j2")
    with pytest.raises(jobs.JobError, match="job kind"):
        jobs.create_job(tmp_path, "Bad Kind", {}, job_id="j3")


def test_detached_job_finishes_with_progress_events_and_low_priority(tmp_path):
    job_dir = jobs.create_job(tmp_path, "count", {"n": 6, "delay": 0.02}, worker=WORKER)
    pid = jobs.start_job(job_dir)
    assert pid != os.getpid()
    status, events, statuses = finish(job_dir)
    assert status.state == "finished", status.error
    assert status.done == 6 and status.total == 6 and status.fraction == 1.0
    assert status.pid == pid and status.started and status.ended >= status.started
    assert (job_dir / "result.txt").read_text() == "counted to 6\n"
    steps = [e["step"] for e in events if "step" in e and "loss" in e]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(e["t"], float) for e in events)
    proc = next(e for e in events if e.get("event") == "process")
    assert proc["pid"] == pid and proc["sid"] == pid  # its own process session
    assert proc["nice"] >= os.nice(0) + 10 or proc["nice"] == 19
    assert events[-1]["event"] == "ended" and events[-1]["state"] == "finished"
    assert [s.state for s in statuses][-1] == "finished"
    assert sum(s.terminal for s in statuses) == 1  # watch stops after the terminal status
    with pytest.raises(jobs.JobError, match="only a queued job can start"):
        jobs.start_job(job_dir)


def test_two_launchers_at_once_start_one_worker(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    job_dir = jobs.create_job(tmp_path, "count", {"n": 2}, worker=WORKER)

    def launch(_):
        try:
            return jobs.start_job(job_dir)
        except jobs.JobError as e:
            return str(e)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(launch, range(4)))
    pids = [r for r in results if isinstance(r, int)]
    assert len(pids) == 1 and all("only a queued job can start" in r for r in results if isinstance(r, str))
    status, _, _ = finish(job_dir)
    assert status.state == "finished" and status.pid == pids[0]
    with pytest.raises(jobs.JobError, match="not a job directory"):
        jobs.start_job(tmp_path / "jobs" / "missing")


def test_worker_exception_fails_the_job_with_one_sentence_and_traceback_in_log(tmp_path):
    job_dir = jobs.create_job(tmp_path, "boom", {"message": "the teacher returned nothing usable"}, worker=WORKER)
    jobs.start_job(job_dir)
    status, events, _ = finish(job_dir)
    assert status.state == "failed"
    assert status.error == "the teacher returned nothing usable"
    log = (job_dir / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "ValueError: the teacher returned" in log
    assert "about to fail" in log
    assert events[-1] == {**events[-1], "event": "ended", "state": "failed"}


def test_fail_and_unknown_kind_read_as_failed_without_traceback(tmp_path):
    job_dir = jobs.create_job(tmp_path, "refuse", {"message": "the persona has no traits."})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed" and status.error == "the persona has no traits."
    assert "Traceback" not in (job_dir / "log.txt").read_text()

    job_dir = jobs.create_job(tmp_path, "nope", {})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert "'nope' is unknown" in status.error and "boom, count, hang, refuse" in status.error


def test_inline_run_uses_the_same_files(tmp_path):
    job_dir = jobs.create_job(tmp_path, "count", {"n": 4})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished" and status.done == 4 and status.inline
    assert status.pid == os.getpid()
    events, _ = jobs.read_events(job_dir)
    assert [e["step"] for e in events if "loss" in e] == [1, 2, 3, 4]
    with pytest.raises(jobs.JobError, match="only a queued job can run"):
        jobs.run_job_inline(job_dir, KINDS)


def test_cancel_sends_sigterm_the_work_checkpoints_and_a_new_worker_resumes(tmp_path):
    job_dir = jobs.create_job(tmp_path, "count", {"n": 400, "delay": 0.01}, worker=WORKER)
    jobs.start_job(job_dir)
    wait_for(lambda: jobs.read_status(job_dir).done >= 5, what="progress")
    assert jobs.cancel_job(job_dir) is True
    status, events, _ = finish(job_dir)
    assert status.state == "cancelled"
    step = int((job_dir / "checkpoint.txt").read_text())
    assert 5 <= step < 400
    assert {"event": "checkpoint", "step": step}.items() <= next(
        e for e in events if e.get("event") == "checkpoint"
    ).items()
    assert "received SIGTERM" in (job_dir / "log.txt").read_text()
    assert jobs.cancel_job(job_dir) is False  # nothing left to cancel

    # Resume: a new worker on the same directory; events are appended, never truncated.
    n_events = len(jobs.read_events(job_dir)[0])
    assert jobs.requeue_job(job_dir).state == "queued"
    jobs.start_job(job_dir)
    status, _, _ = finish(job_dir, timeout=60)
    assert status.state == "finished", status.error
    all_events, _ = jobs.read_events(job_dir)
    assert len(all_events) > n_events
    assert [e["event"] for e in all_events if e.get("event") in ("started", "requeued")] == [
        "started",
        "requeued",
        "started",
    ]
    assert f"resuming from step {step}" in (job_dir / "log.txt").read_text()
    assert json.loads((job_dir / "status.json").read_text())["attempt"] == 2


def test_cancel_before_start_and_between_launch_and_begin(tmp_path):
    job_dir = jobs.create_job(tmp_path, "count", {"n": 3})
    assert jobs.cancel_job(job_dir) is True
    assert jobs.read_status(job_dir).state == "cancelled"

    # Launched but the worker has not begun: the request waits in status.json for it.
    job_dir = jobs.create_job(tmp_path, "count", {"n": 50, "delay": 0.05}, worker=WORKER)
    jobs.start_job(job_dir)
    assert jobs.cancel_job(job_dir) is True
    status, _, _ = finish(job_dir)
    assert status.state == "cancelled"
    assert not (job_dir / "result.txt").exists()


def test_killed_worker_reads_as_died_with_the_log_tail(tmp_path):
    job_dir = jobs.create_job(tmp_path, "hang", {}, worker=WORKER)
    pid = jobs.start_job(job_dir)
    wait_for(lambda: (job_dir / "hanging").exists(), what="the worker to start hanging")
    assert jobs.read_status(job_dir, stale_after=0.3).state == "running"
    os.killpg(pid, signal.SIGKILL)
    status = wait_for(
        lambda: (s := jobs.read_status(job_dir, stale_after=0.3)).state == "died" and s,
        what="the died verdict",
    )
    assert f"worker process {pid} is gone" in status.error
    assert "a line on stdout before hanging" in status.error and "hanging; kill me" in status.error
    # The verdict waits for a stale heartbeat: with the default 10 s it is still "running".
    assert jobs.read_status(job_dir, stale_after=60).state == "running"
    assert jobs.list_jobs(tmp_path, stale_after=0.3)[0].state == "died"


def test_worker_that_cannot_even_import_reads_as_died(tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.STALE_ENV, "0.2")
    job_dir = jobs.create_job(tmp_path, "count", {"n": 1}, worker="no_such_worker_module")
    jobs.start_job(job_dir)
    status = wait_for(lambda: (s := jobs.read_status(job_dir)).state == "died" and s, what="died")
    assert "No module named no_such_worker_module" in status.error


def test_worker_outlives_the_process_that_started_it(tmp_path):
    # 10 s of work: still running when the launcher has gone, however slow the machine.
    job_dir = jobs.create_job(tmp_path, "count", {"n": 200, "delay": 0.05}, worker=WORKER)
    launcher = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from supervisor import jobs; print(jobs.start_job(sys.argv[1]))",
            str(job_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert launcher.returncode == 0, launcher.stderr
    pid = int(launcher.stdout)
    assert not jobs.read_status(job_dir).terminal  # the launcher is gone, the job is not
    status, _, _ = finish(job_dir)
    assert status.state == "finished" and status.pid == pid and status.done == 200


def test_read_events_is_incremental_and_skips_partial_and_bad_lines(tmp_path):
    job_dir = jobs.create_job(tmp_path, "count", {"n": 2})
    jobs.run_job_inline(job_dir, KINDS)
    first, offset = jobs.read_events(job_dir)
    assert [e.get("step") for e in first if "loss" in e] == [1, 2]
    assert offset == (job_dir / "events.jsonl").stat().st_size
    assert jobs.read_events(job_dir, offset) == ([], offset)
    with open(job_dir / "events.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # a line still being written
    assert jobs.read_events(job_dir, offset) == ([], offset)
    with open(job_dir / "events.jsonl", "a") as f:
        f.write('ss": 0.5}\nnot json\n[1, 2]\n{"step": 4}\n')
    new, offset2 = jobs.read_events(job_dir, offset)
    assert new == [{"step": 3, "loss": 0.5}, {"step": 4}]
    assert offset2 == (job_dir / "events.jsonl").stat().st_size


def test_list_jobs_and_log_tail(tmp_path):
    assert jobs.list_jobs(tmp_path) == []
    ids = []
    for i in range(3):
        d = jobs.create_job(tmp_path, "count", {"n": 1}, job_id=f"job-{i}")
        ids.append(d.name)  # created in the same instant or not, list_jobs breaks ties by id
    jobs.run_job_inline(tmp_path / "jobs" / "job-1", KINDS)
    (tmp_path / "jobs" / "not-a-job").mkdir()
    listed = jobs.list_jobs(tmp_path)
    assert [s.id for s in listed] == ids
    assert [s.state for s in listed] == ["queued", "finished", "queued"]
    log = tmp_path / "jobs" / "job-0" / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert jobs.log_tail(log.parent, 3) == "line 97\nline 98\nline 99\n"
    with pytest.raises(jobs.JobError, match="not a job directory"):
        jobs.read_status(tmp_path / "jobs" / "not-a-job")


def test_the_protocol_module_imports_no_ml_library_and_no_ui():
    code = (
        "import sys, json, supervisor.jobs;"
        "print(json.dumps(sorted(m for m in ('torch','transformers','llama_cpp','textual','persona_tui') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_worker_killed_near_the_memory_limit_is_said_to_have_run_out_of_memory(tmp_path):
    job_dir = jobs.create_job(tmp_path, "hang", {}, worker=WORKER)
    pid = jobs.start_job(job_dir)
    wait_for(lambda: (job_dir / "hanging").exists(), what="the worker to start")
    total_kb = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal:"))
    with open(job_dir / jobs.EVENTS_FILE, "a") as f:
        f.write(json.dumps({"event": "step", "step": 3, "rss_mb": 0.95 * total_kb / 1024}) + "\n")
    os.killpg(pid, signal.SIGKILL)  # what the kernel's OOM killer does
    status = wait_for(lambda: (s := jobs.read_status(job_dir, stale_after=0.3)).state == "died" and s, what="died")
    assert "most likely killed for running out of memory" in status.error and "batch_size" in status.error


def test_a_worker_killed_with_memory_to_spare_gets_no_memory_guess(tmp_path):
    job_dir = jobs.create_job(tmp_path, "hang", {}, worker=WORKER)
    pid = jobs.start_job(job_dir)
    wait_for(lambda: (job_dir / "hanging").exists(), what="the worker to start")
    with open(job_dir / jobs.EVENTS_FILE, "a") as f:
        f.write(json.dumps({"event": "step", "step": 3, "rss_mb": 900.0}) + "\n")
    os.killpg(pid, signal.SIGKILL)
    status = wait_for(lambda: (s := jobs.read_status(job_dir, stale_after=0.3)).state == "died" and s, what="died")
    assert "memory" not in status.error.splitlines()[0]


def test_child_groups_are_forgotten_when_they_exit_and_on_requeue(tmp_path):
    """A process-group id outlives its group only as a number another group may get: a forced
    cancel must never kill a group of an earlier launch or attempt."""
    job_dir = jobs.create_job(tmp_path, "count", {"n": 1})
    jobs.register_child_group(job_dir, 4242)
    jobs.register_child_group(job_dir, 4343)
    jobs.unregister_child_group(job_dir, 4242)
    assert jobs._child_groups(job_dir) == [4343]
    assert jobs.run_job_inline(job_dir, {"count": lambda job: None}).state == "finished"
    jobs.requeue_job(job_dir)
    assert jobs._child_groups(job_dir) == [] and not (job_dir / jobs.CHILDREN_FILE).exists()
