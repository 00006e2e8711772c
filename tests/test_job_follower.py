"""The job-follower widget: a real detached worker (tests/jobs_fixture_worker.py) followed by
reading its folder off the UI thread; the messages arrive in order and the end is posted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from persona_tui.widgets.job_follower import JobFollower
from supervisor import jobs
from waiting import wait_until

pytestmark = pytest.mark.anyio
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _worker_importable(monkeypatch):
    """Detached workers inherit the environment: let them import the fixture worker."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), path) if p))


class Recorder(App):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[JobFollower._FollowerMessage] = []

    def compose(self) -> ComposeResult:
        yield JobFollower(interval=0.05, id="follower")

    def on_job_follower_found(self, message: JobFollower.Found) -> None:
        self.got.append(message)

    def on_job_follower_progress(self, message: JobFollower.Progress) -> None:
        self.got.append(message)

    def on_job_follower_events(self, message: JobFollower.Events) -> None:
        self.got.append(message)

    def on_job_follower_ended(self, message: JobFollower.Ended) -> None:
        self.got.append(message)


def _count_job(workspace: Path, n: int, delay: float, **extra) -> Path:
    return jobs.create_job(workspace, "count", {"n": n, "delay": delay, **extra}, worker="jobs_fixture_worker")


async def test_follow_a_detached_job_to_its_end(tmp_path):
    job_dir = _count_job(tmp_path, 6, 0.1)
    app = Recorder()
    async with app.run_test() as pilot:
        follower = app.query_one(JobFollower)
        jobs.start_job(job_dir)
        follower.follow(job_dir, key="k", events=True)
        await wait_until(
            pilot, lambda: any(isinstance(m, JobFollower.Ended) for m in app.got), timeout=60, what="the end of the job"
        )
        await pilot.pause()
        ended = [m for m in app.got if isinstance(m, JobFollower.Ended)]
        assert len(ended) == 1 and ended[0].status.state == "finished" and ended[0].key == "k"
        assert app.got[-1] is ended[0]  # nothing after the end
        steps = [e["step"] for m in app.got if isinstance(m, JobFollower.Events) for e in m.events if "step" in e]
        assert steps == [1, 2, 3, 4, 5, 6]  # every event, in order, once
        progress = [m.status for m in app.got if isinstance(m, JobFollower.Progress)]
        assert progress and progress[-1].state == "finished" and progress[-1].done == 6
        assert [p.done for p in progress] == sorted(p.done for p in progress)
        assert follower.following == {}


async def test_follow_latest_finds_the_newest_matching_job(tmp_path):
    old = _count_job(tmp_path, 1, 0.0, tag="a")
    assert jobs.run_job_inline(old, {"count": "jobs_fixture_worker:count"}).state == "finished"
    running = _count_job(tmp_path, 400, 0.05, tag="a")
    _count_job(tmp_path, 1, 0.0, tag="b")  # newer, but it does not match
    app = Recorder()
    async with app.run_test() as pilot:
        follower = app.query_one(JobFollower)
        follower.follow_latest(tmp_path, "count", lambda status, spec: spec.get("tag") == "zzz")
        await wait_until(pilot, lambda: app.got, timeout=30, what="Found")
        assert isinstance(app.got[0], JobFollower.Found) and app.got[0].status is None
        jobs.start_job(running)
        app.got.clear()
        follower.follow_latest(tmp_path, "count", lambda status, spec: spec.get("tag") == "a", key="x")
        await wait_until(
            pilot,
            lambda: any(isinstance(m, JobFollower.Progress) and m.status.state == "running" for m in app.got),
            timeout=60,
            what="the running job followed",
        )
        assert app.got[0].status.dir == running.resolve() and app.got[0].spec["tag"] == "a"
        assert follower.following == {"x": running.resolve()}
        follower.stop("x")  # stop following: the job itself goes on
        assert follower.following == {}
        jobs.cancel_job(running)
        await wait_until(pilot, lambda: jobs.read_status(running).terminal, timeout=60, what="the cancel")
        await pilot.pause()
        assert not any(isinstance(m, JobFollower.Ended) for m in app.got)


class ListRecorder(Recorder):
    def on_job_follower_listed(self, message: JobFollower.Listed) -> None:
        self.got.append(message)

    def on_job_follower_manifest(self, message: JobFollower.Manifest) -> None:
        self.got.append(message)

    def on_job_follower_log(self, message: JobFollower.Log) -> None:
        self.got.append(message)


async def test_watch_jobs_lists_and_follow_posts_the_manifest_and_the_log_as_they_change(tmp_path):
    """What the Train pane uses: the jobs listed by kind, each followed job's manifest (written
    when the worker starts) and its log as the pane shows it, each posted when it changes."""
    other = jobs.create_job(tmp_path, "other", {})
    job_dir = _count_job(tmp_path, 4, 0.1)
    app = ListRecorder()
    async with app.run_test() as pilot:
        follower = app.query_one(JobFollower)
        follower.watch_jobs(tmp_path, ("count",), key="list", every=0.1)
        await wait_until(pilot, lambda: any(isinstance(m, JobFollower.Listed) for m in app.got), what="a listing")
        listed = next(m for m in app.got if isinstance(m, JobFollower.Listed))
        assert listed.key == "list" and [s.id for s in listed.statuses] == [job_dir.name]  # not `other`
        assert other.name not in [s.id for s in listed.statuses]

        (job_dir / "manifest.json").write_text('{"seed": 1}')
        jobs.start_job(job_dir)
        follower.follow(job_dir, key="k", manifest=True, log=lambda d, state: f"{state}: {jobs.log_tail(d, 1)}")
        await wait_until(
            pilot, lambda: any(isinstance(m, JobFollower.Ended) for m in app.got), timeout=60, what="the end"
        )
        follower.stop("list")
        await pilot.pause()
        mine = [m for m in app.got if m.key == "k"]
        manifests = [m.manifest for m in mine if isinstance(m, JobFollower.Manifest)]
        assert manifests and manifests[0] == {"seed": 1}
        logs = [m.text for m in mine if isinstance(m, JobFollower.Log)]
        assert logs and logs[-1].startswith("finished: ") and len(logs) == len(set(logs))  # only changes
        assert isinstance(mine[-1], JobFollower.Ended)
        listed_states = [s.state for m in app.got if isinstance(m, JobFollower.Listed) for s in m.statuses]
        assert "queued" in listed_states or "running" in listed_states
