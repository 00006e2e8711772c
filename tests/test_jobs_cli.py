"""`persona-tui jobs` as a person uses it, on real detached workers (tests/jobs_fixture_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sessions.model import Persona, Session
from sessions.store import SessionFile
from supervisor import jobs
from waiting import wait_for

TESTS = Path(__file__).resolve().parent
WORKER = "jobs_fixture_worker"


@pytest.fixture
def session(tmp_path, monkeypatch) -> Path:
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), path) if p))
    monkeypatch.setenv(jobs.STALE_ENV, "0.5")
    return SessionFile.create(tmp_path / "s.toml", Session(name="s", personas=[Persona(id="p", name="P")])).path


def cli(*args: str, timeout: float = 60, columns: int = 160) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def test_list_watch_log_and_cancel(session: Path):
    workspace = session.with_suffix("")
    assert "no jobs yet" in cli(str(session)).stdout
    done = jobs.create_job(workspace, "count", {"n": 5, "delay": 0.02}, worker=WORKER)
    jobs.start_job(done)
    watched = cli(str(session), "--watch", done.name)
    assert watched.returncode == 0 and f"{done.name} finished" in watched.stdout, watched.stderr
    assert (done / "result.txt").read_text() == "counted to 5\n"

    failing = jobs.create_job(workspace, "refuse", {"message": "the dataset odile-chat is empty."}, worker=WORKER)
    jobs.start_job(failing)
    watched = cli(str(session), "--watch", failing.name)
    assert watched.returncode == 1 and "failed: the dataset odile-chat is empty." in watched.stderr

    slow = jobs.create_job(workspace, "count", {"n": 10_000, "delay": 0.01}, worker=WORKER)
    jobs.start_job(slow)
    wait_for(lambda: jobs.read_status(slow).state == "running")
    cancelled = cli(str(session), "--cancel", slow.name)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    wait_for(lambda: jobs.read_status(slow).state == "cancelled")
    assert (slow / "checkpoint.txt").is_file()  # the worker saved before it stopped

    listed = cli(str(session))
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line.count("│") > 3}
    assert "finished" in rows[done.name] and "100%" in rows[done.name]
    assert "failed" in rows[failing.name] and "odile-chat is empty" in rows[failing.name]
    assert "cancelled" in rows[slow.name]
    # In 80 columns every id is whole on a line of its own (the id is what the other commands
    # take), and its state and message follow it, folded rather than cut.
    narrow = cli(str(session), columns=80).stdout.splitlines()
    assert all(len(line) <= 80 for line in narrow), narrow
    for job, words in ((done, "finished · 100%"), (failing, "failed"), (slow, "cancelled")):
        at = narrow.index(job.name)
        assert words in narrow[at + 1], narrow
    at = narrow.index(failing.name)
    assert "odile-chat is empty" in " ".join(narrow[at + 1 : at + 3]), narrow
    log = cli(str(session), "--log", slow.name)
    assert "checkpoint saved" in log.stdout


def test_a_killed_worker_reads_died_with_its_log(session: Path):
    workspace = session.with_suffix("")
    job = jobs.create_job(workspace, "hang", {}, worker=WORKER)
    pid = jobs.start_job(job)
    wait_for(lambda: (job / "hanging").exists())
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: jobs.read_status(job).state == "died")
    watched = cli(str(session), "--watch", job.name)
    assert watched.returncode == 1 and "died" in watched.stderr and "hanging; kill me" in watched.stderr
    assert "died" in cli(str(session)).stdout


@pytest.mark.parametrize("bad", ["nope-123", "../../etc", "/abs"])
def test_an_unknown_or_unsafe_id_is_one_sentence_exit_2(session: Path, bad: str):
    for flag in ("--watch", "--cancel", "--log"):
        result = cli(str(session), flag, bad)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_missing_session_is_exit_2(tmp_path: Path):
    result = cli(str(tmp_path / "none.toml"))
    assert result.returncode == 2 and "is not a session file" in result.stderr


def test_a_stopped_jobs_bar_keeps_what_it_did(tmp_path):
    """A cancelled job's bar ends at the items it did, not full: the format comparison's cancelled
    perplexity matrix once read "600/600 ... cancelled" after 348 items."""
    from rich.console import Console

    from persona_tui.job_progress import follow
    from supervisor import jobs

    for state, want, not_want in (("cancelled", "348/600", "600/600"), ("finished", "600/600", "348/600")):
        job = jobs.create_job(tmp_path / state, "eval", {"x": 1})
        raw = jobs._read_status_raw(job)
        jobs._write_status_raw(job, {**raw, "state": state, "done": 348, "total": 600, "ended": raw["created"]})
        console = Console(record=True, width=120, force_terminal=False)
        assert follow(job, "eval x", console=console, interval=0.01).state == state
        text = console.export_text()
        assert want in text and not_want not in text, text
