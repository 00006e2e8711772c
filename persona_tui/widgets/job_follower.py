"""Following a job from a pane: one widget that reads a job's folder off the UI thread.

A pane mounts a `JobFollower` (it draws nothing) and asks it to `follow(job_dir)`, or to find and
follow the newest job that matches (`follow_latest`: a build of this dataset, a queue of
evaluations), under a `key`, one job per key. A thread worker reads status.json and events.jsonl
(supervisor.jobs) every `interval` seconds and posts messages that bubble to the pane:

- `Found(key, status | None, spec)`: what `follow_latest` found (None: no such job), with its
  spec.toml, so a pane can tell a late answer to an earlier question;
- `Progress(key, status)`: the status changed; a newer one replaces one the app has not handled
  yet (the frequent message merges);
- `Events(key, job_dir, events)`: new events, in order (only with `events=True`);
- `Ended(key, status)`: the job reached a terminal state (finished, failed, cancelled, died),
  posted once, after its last events.

The pane only draws from these messages. The Data and Evaluate panes use it; the Train pane (its
own multi-job follower for now) can too: `follow(job_dir, key=job_id, events=True)` per job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.widget import Widget
from textual.worker import get_current_worker

from supervisor import jobs

INTERVAL_S = 0.3
Match = Callable[[jobs.JobStatus, dict[str, Any]], bool]


class JobFollower(Widget):
    """Reads job folders in thread workers and posts what changed; draws nothing."""

    DEFAULT_CSS = """
    JobFollower {
        display: none;
    }
    """

    class _FollowerMessage(Message):
        def __init__(self, follower: JobFollower, key: str) -> None:
            super().__init__()
            self.follower = follower
            self.key = key

        @property
        def control(self) -> JobFollower:
            return self.follower

    class Found(_FollowerMessage):
        """The newest matching job (None when there is none) and its spec, before it is followed."""

        def __init__(
            self, follower: JobFollower, key: str, status: jobs.JobStatus | None, spec: dict[str, Any] | None = None
        ) -> None:
            super().__init__(follower, key)
            self.status = status
            self.spec = spec or {}

    class Progress(_FollowerMessage):
        """The job's status changed."""

        def __init__(self, follower: JobFollower, key: str, status: jobs.JobStatus) -> None:
            super().__init__(follower, key)
            self.status = status

        def can_replace(self, message: Message) -> bool:
            return (
                isinstance(message, JobFollower.Progress)
                and message.follower is self.follower
                and message.key == self.key
                and message.status.dir == self.status.dir
            )

    class Events(_FollowerMessage):
        """Events appended to the job's events.jsonl since the last message."""

        def __init__(self, follower: JobFollower, key: str, job_dir: Path, events: list[dict[str, Any]]) -> None:
            super().__init__(follower, key)
            self.job_dir = job_dir
            self.events = events

    class Ended(_FollowerMessage):
        """The job is over (its status is terminal)."""

        def __init__(self, follower: JobFollower, key: str, status: jobs.JobStatus) -> None:
            super().__init__(follower, key)
            self.status = status

    def __init__(self, interval: float = INTERVAL_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.following: dict[str, Path] = {}  # key -> the job folder followed now

    # -- what a pane calls ----------------------------------------------------------------
    def follow(self, job_dir: str | Path, key: str = "", events: bool = False) -> None:
        """Follow `job_dir` under `key` (replacing what that key followed) until it ends."""
        job_dir = Path(job_dir)
        self.following[key] = job_dir
        self.run_worker(
            lambda: self._follow(job_dir, key, events),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group=f"job-follow-{key}",
            name=f"follow {job_dir.name}",
        )

    def follow_latest(
        self,
        workspace: str | Path,
        kind: str | tuple[str, ...],
        match: Match | None = None,
        key: str = "",
        events: bool = False,
        only_running: bool = False,
    ) -> None:
        """Find the newest job of `kind` (or of any of several) whose status and spec `match` (in the
        thread), post `Found`, and follow it unless it has ended (or, with `only_running`, post
        nothing more)."""
        self.following.pop(key, None)
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)

        def find() -> None:
            found, found_spec = None, None
            for status in reversed(jobs.list_jobs(workspace)):
                if status.kind not in kinds:
                    continue
                try:
                    spec = jobs.read_spec(status.dir)
                except ValueError:
                    continue
                if match is None or match(status, spec):
                    found, found_spec = status, spec
                    break
            if get_current_worker().is_cancelled:
                return
            self.post_message(self.Found(self, key, found, found_spec))
            if found is not None and not found.terminal:
                self.following[key] = found.dir
                self._follow(found.dir, key, events)
            elif found is not None and not only_running:
                self.post_message(self.Progress(self, key, found))

        self.run_worker(
            find,
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group=f"job-follow-{key}",
            name=f"find {'/'.join(kinds)}",
        )

    def stop(self, key: str = "") -> None:
        """Stop following under `key` (the job itself goes on)."""
        self.following.pop(key, None)
        self.workers.cancel_group(self, f"job-follow-{key}")

    # -- the thread ---------------------------------------------------------------------------
    def _follow(self, job_dir: Path, key: str, events: bool) -> None:
        worker = get_current_worker()
        offset = 0
        last: dict[str, Any] | None = None
        while not worker.is_cancelled:
            try:
                status = jobs.read_status(job_dir)
            except ValueError as e:  # the folder went away: say so as an ended job
                status = jobs.JobStatus(id=job_dir.name, kind="", state="died", dir=job_dir, error=str(e))
            if events:
                new, offset = jobs.read_events(job_dir, offset)
                if new and not worker.is_cancelled:
                    self.post_message(self.Events(self, key, job_dir, new))
            if worker.is_cancelled:
                return
            now = status.to_dict()
            if now != last:
                last = now
                self.post_message(self.Progress(self, key, status))
            if status.terminal:
                if self.following.get(key) == job_dir:
                    self.following.pop(key, None)
                self.post_message(self.Ended(self, key, status))
                return
            deadline = time.monotonic() + self.interval
            while time.monotonic() < deadline and not worker.is_cancelled:
                time.sleep(0.05)
