"""The service job kind with real detached workers and a real HTTP server on 127.0.0.1.

The server here is Python's own `http.server` (it answers GETs and writes one access-log line a
request, as llama-cpp-python's server does); the llama.cpp server serving a real export is
tested in tests/test_serve_service.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from supervisor import jobs
from waiting import wait_for

CLI = [sys.executable, "-m", "persona_tui.cli"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_service(workspace: Path, idle: float = 0, **extra) -> tuple[Path, str]:
    port = _free_port()
    (workspace / "www").mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    service = {
        "command": [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(workspace / "www"),
        ],
        "url": url,
        "ready_url": url + "/",
        "idle_timeout_s": idle,
        **extra,
    }
    return jobs.create_service_job(workspace, service), url


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _state(job_dir: Path, *states: str):
    status = jobs.read_status(job_dir)
    return status if status.state in states else None


def test_a_service_is_ready_with_its_url_is_listed_and_cancel_stops_it(tmp_path):
    ws = tmp_path / "s"
    job_dir, url = _http_service(ws)
    assert jobs.read_status(job_dir).state == "queued"
    jobs.start_job(job_dir)
    ready = wait_for(lambda: _state(job_dir, "ready", "failed", "died"), 60, what="the service to be ready")
    assert ready.state == "ready", ready.error
    assert ready.url == url and _answers(url)
    server_pid = int((job_dir / jobs.CHILDREN_FILE).read_text().split()[0])

    (tmp_path / "s.toml").write_text('schema_version = 1\nname = "t"\n')
    listing = subprocess.run(
        [*CLI, "jobs", str(tmp_path / "s.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if job_dir.name in line)
    assert "service" in row and "ready" in row and f"ready at {url}" in row

    assert jobs.cancel_job(job_dir)
    stopped = wait_for(lambda: _state(job_dir, "stopped", "failed", "died", "cancelled"), 60, what="the stop")
    assert stopped.state == "stopped" and stopped.message == "stopped: cancelled"
    assert not _answers(url)
    assert not Path(f"/proc/{server_pid}").exists() or "Z" in Path(f"/proc/{server_pid}/stat").read_text().split()[2]
    events = [e.get("event") for e in jobs.read_events(job_dir)[0]]
    assert events[-4:] == ["starting", "ready", "stopped", "ended"] or events[-3:] == ["ready", "stopped", "ended"]


def test_a_service_job_written_before_the_supervisor_moved_still_starts(tmp_path):
    """Job folders on users' disks name the worker module they were created with; the service
    worker moved from sessions/ to supervisor/, and a job naming the old module still runs."""
    job_dir, url = _http_service(tmp_path / "s")
    for name in (jobs.STATUS_FILE, jobs.SPEC_FILE):
        path = job_dir / name
        path.write_text(path.read_text().replace(jobs.SERVICE_WORKER, "sessions.service_worker"))
    assert jobs.read_status(job_dir).worker == "sessions.service_worker"
    jobs.start_job(job_dir)
    try:
        ready = wait_for(lambda: _state(job_dir, "ready", "failed", "died"), 60, what="the service to be ready")
        assert ready.state == "ready", ready.error + (job_dir / jobs.LOG_FILE).read_text()
        assert _answers(url)
        worker_command = Path(f"/proc/{ready.pid}/cmdline").read_bytes().split(b"\0")
        assert jobs.SERVICE_WORKER.encode() in worker_command
        assert jobs.cancel_job(job_dir)
        assert wait_for(lambda: _state(job_dir, "stopped", "failed", "died", "cancelled"), 60).state == "stopped"
    finally:  # a failed assertion must not leave the server running (one did, for two hours)
        jobs.cancel_job(job_dir)


def test_requests_keep_a_service_up_and_idleness_stops_it(tmp_path):
    job_dir, url = _http_service(tmp_path / "s", idle=3)
    jobs.start_job(job_dir)
    assert wait_for(lambda: _state(job_dir, "ready", "failed", "died"), 60).state == "ready"
    # Requests every 0.5 s for 5 s, longer than the 3 s idle timeout: each one restarts the clock.
    until = time.monotonic() + 5
    while time.monotonic() < until:
        assert _answers(url)
        assert jobs.read_status(job_dir).state == "ready"
        time.sleep(0.5)
    stopped = wait_for(lambda: _state(job_dir, "stopped", "failed", "died"), 60, what="the idle stop")
    assert stopped.state == "stopped" and stopped.message == "stopped: idle for 3 s"
    assert not _answers(url)


def test_a_server_that_exits_fails_the_job_with_its_last_words(tmp_path):
    ws = tmp_path / "s"
    script = "import sys; print('error: the model file is truncated'); sys.exit(3)"
    job_dir = jobs.create_service_job(ws, {"command": [sys.executable, "-c", script], "url": "http://127.0.0.1:9/v1"})
    status = jobs.run_job_inline(job_dir, {jobs.SERVICE_KIND: jobs.run_service})
    assert status.state == "failed"
    assert "exited with code 3 before answering (error: the model file is truncated)" in status.error
    assert str(job_dir / jobs.SERVER_LOG) in status.error


def test_a_missing_api_key_variable_fails_before_any_server_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("PT_TEST_NO_SUCH_KEY", raising=False)
    job_dir, _ = _http_service(tmp_path / "s", api_key_env="PT_TEST_NO_SUCH_KEY")
    status = jobs.run_job_inline(job_dir, {jobs.SERVICE_KIND: jobs.run_service})
    assert status.state == "failed"
    assert "PT_TEST_NO_SUCH_KEY" in status.error and "is not set" in status.error
    assert not (job_dir / jobs.SERVER_LOG).exists()


def test_a_service_needs_a_command_and_a_url(tmp_path):
    with pytest.raises(jobs.JobError, match="needs a command and a url"):
        jobs.create_service_job(tmp_path, {"url": "http://127.0.0.1:1/v1"})


def test_serve_refuses_a_port_in_use_and_an_unset_key_variable_in_one_sentence(tmp_path, monkeypatch):
    import socket

    from export_fixtures import make_session

    sf = make_session(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "serve", str(sf.path), "--gguf", "bundled:smollm2-135m-instruct", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"persona-tui: port {port} on 127.0.0.1 is in use; choose another with --port (0 picks a free one)."
    )
    monkeypatch.delenv("PT_NO_SUCH_KEY", raising=False)
    done = subprocess.run(
        [
            *CLI,
            "serve",
            str(sf.path),
            "--gguf",
            "bundled:smollm2-135m-instruct",
            "--port",
            "0",
            "--api-key-env",
            "PT_NO_SUCH_KEY",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "PT_NO_SUCH_KEY is empty or not set" in done.stderr
    assert not (sf.workspace / "jobs").exists()  # nothing was started


def test_a_server_that_dies_while_ready_fails_the_service_naming_it(tmp_path):
    import signal

    job_dir, url = _http_service(tmp_path / "s")
    jobs.start_job(job_dir)
    assert wait_for(lambda: _state(job_dir, "ready", "failed", "died"), 60).state == "ready"
    server_pid = int((job_dir / jobs.CHILDREN_FILE).read_text().split()[0])
    os.kill(server_pid, signal.SIGKILL)
    failed = wait_for(lambda: _state(job_dir, "failed", "stopped", "died"), 60, what="the failure")
    assert failed.state == "failed"
    assert (
        failed.error.startswith("the server exited with code -9 (") and str(job_dir / jobs.SERVER_LOG) in failed.error
    )
    assert "\n" not in failed.error
