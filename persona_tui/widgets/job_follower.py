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
- `Manifest(key, job_dir, manifest)`: the job's manifest.json, each time it is (re)written
  (only with `manifest=True`);
- `Log(key, job_dir, text)`: what `log(job_dir, state)` makes of the job's log, when it changed
  (only with a `log` function; a newer one replaces one not yet handled);
- `Ended(key, status)`: the job reached a terminal state (finished, failed, cancelled, died),
  posted once, after its last events.

And `watch_jobs(workspace, kinds, key)` lists a workspace's jobs of some kinds every few seconds:
`Listed(key, statuses)`, oldest first (merged like `Progress`).

The pane only draws from these messages. The Data, Train and Evaluate panes use it: the Train
pane lists its jobs with `watch_jobs` and follows each job it shows under the job's id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.widget import Widget
from textual.worker import get_current_worker

from sessions.manifest import MANIFEST_FILE, read_manifest
from supervisor import jobs

INTERVAL_S = 0.3
LIST_EVERY_S = 2.0
Match = Callable[[jobs.JobStatus, dict[str, Any]], bool]
LogView = Callable[[Path, str], str]  # (job folder, state) -> the text a pane shows of its log


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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

    class Manifest(_FollowerMessage):
        """The job's manifest.json as it is now (None: not written yet)."""

        def __init__(self, follower: JobFollower, key: str, job_dir: Path, manifest: dict[str, Any] | None) -> None:
            super().__init__(follower, key)
            self.job_dir = job_dir
            self.manifest = manifest

    class Log(_FollowerMessage):
        """What the pane shows of the job's log, changed."""

        def __init__(self, follower: JobFollower, key: str, job_dir: Path, text: str) -> None:
            super().__init__(follower, key)
            self.job_dir = job_dir
            self.text = text

        def can_replace(self, message: Message) -> bool:
            return (
                isinstance(message, JobFollower.Log)
                and message.follower is self.follower
                and message.key == self.key
                and message.job_dir == self.job_dir
            )

    class Listed(_FollowerMessage):
        """The workspace's jobs of the kinds watched, oldest first."""

        def __init__(self, follower: JobFollower, key: str, statuses: list[jobs.JobStatus]) -> None:
            super().__init__(follower, key)
            self.statuses = statuses

        def can_replace(self, message: Message) -> bool:
            return (
                isinstance(message, JobFollower.Listed)
                and message.follower is self.follower
                and message.key == self.key
            )

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
    def follow(
        self,
        job_dir: str | Path,
        key: str = "",
        events: bool = False,
        manifest: bool = False,
        log: LogView | None = None,
    ) -> None:
        """Follow `job_dir` under `key` (replacing what that key followed) until it ends; a job
        that has ended already is read once (its events, manifest and log) and posts `Ended`."""
        job_dir = Path(job_dir)
        self.following[key] = job_dir
        self.run_worker(
            lambda: self._follow(job_dir, key, events, manifest, log),
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

    def watch_jobs(
        self, workspace: str | Path, kinds: tuple[str, ...], key: str = "jobs", every: float = LIST_EVERY_S
    ) -> None:
        """Post `Listed(key, statuses)` with the workspace's jobs of `kinds` now and every `every`
        seconds, until `stop(key)` or the widget goes."""

        def listing() -> None:
            worker = get_current_worker()
            while not worker.is_cancelled:
                statuses = [s for s in jobs.list_jobs(workspace) if s.kind in kinds]
                if worker.is_cancelled:
                    return
                self.post_message(self.Listed(self, key, statuses))
                deadline = time.monotonic() + every
                while time.monotonic() < deadline and not worker.is_cancelled:
                    time.sleep(0.05)

        self.run_worker(
            listing, thread=True, exclusive=True, exit_on_error=False, group=f"job-list-{key}", name=f"list {key}"
        )

    def stop(self, key: str = "") -> None:
        """Stop following (or listing) under `key` (the job itself goes on)."""
        self.following.pop(key, None)
        self.workers.cancel_group(self, f"job-follow-{key}")
        self.workers.cancel_group(self, f"job-list-{key}")

    # -- the thread ---------------------------------------------------------------------------
    def _follow(
        self, job_dir: Path, key: str, events: bool, manifest: bool = False, log: LogView | None = None
    ) -> None:
        worker = get_current_worker()
        offset = 0
        last: dict[str, Any] | None = None
        manifest_seen: float | None = None
        log_seen: str | None = None
        while not worker.is_cancelled:
            try:
                status = jobs.read_status(job_dir)
            except ValueError as e:  # the folder went away: say so as an ended job
                status = jobs.JobStatus(id=job_dir.name, kind="", state="died", dir=job_dir, error=str(e))
            if manifest:
                mtime = _mtime(job_dir / MANIFEST_FILE)
                if mtime != manifest_seen:
                    manifest_seen = mtime
                    self.post_message(self.Manifest(self, key, job_dir, read_manifest(job_dir)))
            if events:
                new, offset = jobs.read_events(job_dir, offset)
                if new and not worker.is_cancelled:
                    self.post_message(self.Events(self, key, job_dir, new))
            if log is not None:
                text = log(job_dir, status.state)
                if text != log_seen and not worker.is_cancelled:
                    log_seen = text
                    self.post_message(self.Log(self, key, job_dir, text))
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
