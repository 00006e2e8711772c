"""The job protocol: long work as detached workers that anyone can follow through files.

A job is a directory `<workspace>/jobs/<id>/` holding `spec.toml` (frozen inputs), `status.json`
(state, pid, host, times, heartbeat, progress, error), `events.jsonl` (one JSON object a line)
and `log.txt` (the worker's output). The worker runs in its own process session so it outlives
the TUI and a dropped SSH connection; viewers only read files, so any number can follow a job,
and a worker whose pid is gone and whose heartbeat stopped reads as *died*. Everything here is
stdlib (+ tomlkit for writing the spec): no torch, no UI. This package sits on the lowest floor,
just above `sessions` (whose workspace layout, id rule and atomic write it uses); see
docs/architecture.md.

    job_dir = create_job(workspace, "train", {"run": "r1"})
    start_job(job_dir)                     # python -m trainers.worker <job_dir>, nice +10
    for status, events in watch(job_dir): ...

Inside the worker, `run_worker(job_dir, kinds)` calls `<module>.run(job)` with a `JobReporter`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from sessions.workspace import ID_RULE, id_problem, jobs_dir

STATES = ("queued", "running", "finished", "failed", "cancelled", "died", "starting", "ready", "stopped")
TERMINAL = frozenset({"finished", "failed", "cancelled", "died", "stopped"})
# A live job has a worker (or is about to): a service job is `starting`, then `ready` with its
# URL, instead of `running`; it ends `stopped` (cancelled, idle) or `failed` (the server died).
LIVE = frozenset({"queued", "running", "starting", "ready"})

SPEC_FILE = "spec.toml"
STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
CHILDREN_FILE = "children.pgid"  # process groups a worker started in sessions of their own

HEARTBEAT_S = 2.0
# A running job whose pid is gone is declared died only once its heartbeat is this old, so a
# worker that just wrote its final status and exited is never mistaken for a dead one.
STALE_ENV = "PERSONA_TUI_JOB_STALE_S"
DEFAULT_STALE_S = 10.0
NICE_ENV = "PERSONA_TUI_JOB_NICE"  # set by start_job; the worker lowers its priority by it
DEFAULT_NICE = 10

_RESERVED_SPEC_KEYS = ("id", "kind", "worker", "created")
_SAFE_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class JobError(ValueError):
    """A job cannot be created, started or read; the message is one sentence with the fix."""


class JobCancelled(Exception):
    """Raised by `JobReporter.raise_if_cancelled()`; the worker records the job as cancelled."""


class JobFailed(Exception):
    """Raised by `JobReporter.fail(msg)`; the worker records the job as failed with `msg`."""


@dataclass
class JobStatus:
    """What status.json says, plus the *died* verdict computed when it is read."""

    id: str
    kind: str
    state: str
    dir: Path
    worker: str = ""
    pid: int | None = None
    host: str = ""
    created: float | None = None
    started: float | None = None
    heartbeat: float | None = None
    ended: float | None = None
    done: float = 0
    total: float = 0
    message: str = ""
    error: str = ""
    inline: bool = False  # run by run_job_inline in a foreground process
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def url(self) -> str:
        """A service job's base URL ("" for other jobs)."""
        return str(self.extra.get("url") or "")

    @property
    def fraction(self) -> float | None:
        """Progress in [0, 1], or None while the total is unknown."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "worker": self.worker,
            "pid": self.pid,
            "host": self.host,
            "created": self.created,
            "started": self.started,
            "heartbeat": self.heartbeat,
            "ended": self.ended,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "error": self.error,
            "inline": self.inline,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, job_dir: Path, d: Mapping[str, Any]) -> JobStatus:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k not in ("dir", "extra")}
        extra = {k: v for k, v in d.items() if k not in cls.__dataclass_fields__}
        known.setdefault("id", job_dir.name)
        known.setdefault("kind", "")
        known.setdefault("state", "queued")
        return cls(dir=job_dir, extra=extra, **known)


# ----------------------------------------------------------------------------- files


def jobs_root(workspace: str | os.PathLike[str]) -> Path:
    return jobs_dir(Path(workspace))


def new_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_job_id(job_id: str) -> str:
    problem = id_problem(job_id)
    if problem:
        raise JobError(f"job id {job_id!r} is not a safe file name: it {problem}; {ID_RULE}.")
    return job_id


def _atomic_write_text(path: Path, text: str, fsync: bool = False) -> None:
    from sessions.store import atomic_write  # imported when writing: reading jobs stays cheap

    atomic_write(path, text, backup=False, fsync=fsync)


@contextlib.contextmanager
def _status_lock(job_dir: Path) -> Iterator[None]:
    """Serialises read-modify-write of status.json between the launcher and the worker."""
    if not (job_dir / STATUS_FILE).is_file():
        raise JobError(f"{job_dir} is not a job directory: it has no {STATUS_FILE}.")
    with open(job_dir / ".status.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_status_raw(job_dir: Path) -> dict[str, Any]:
    path = job_dir / STATUS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{job_dir} is not a job directory: it has no {STATUS_FILE}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JobError(f"{path} is not valid JSON ({e}); the job's status cannot be read.") from None


def _write_status_raw(job_dir: Path, data: Mapping[str, Any]) -> None:
    _atomic_write_text(job_dir / STATUS_FILE, json.dumps(data, indent=1) + "\n")


def _drop_none(value: Any) -> Any:
    """TOML has no null: keys whose value is None are left out of spec.toml."""
    if isinstance(value, Mapping):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value if v is not None]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def read_spec(job_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(job_dir) / SPEC_FILE
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise JobError(f"{Path(job_dir)} is not a job directory: it has no {SPEC_FILE}.") from None
    except tomllib.TOMLDecodeError as e:
        raise JobError(f"{path} is not valid TOML ({e}).") from None


# ----------------------------------------------------------------------------- create / start


def create_job(
    workspace: str | os.PathLike[str],
    kind: str,
    spec: Mapping[str, Any],
    worker: str = "trainers.worker",
    job_id: str | None = None,
) -> Path:
    """Write `<workspace>/jobs/<id>/` with spec.toml and a queued status.json; start nothing."""
    import tomlkit  # sessions may use tomlkit; imported here so reading jobs never needs it

    if not isinstance(kind, str) or not _SAFE_KIND.match(kind):
        raise JobError(f"job kind {kind!r} must be lower-case letters, digits and '_'.")
    job_id = check_job_id(job_id if job_id is not None else new_job_id(kind))
    clean = _drop_none(dict(spec))
    now = time.time()
    header = {"id": job_id, "kind": kind, "worker": worker, "created": now}
    for key in _RESERVED_SPEC_KEYS:
        if key in clean and clean[key] != header[key] and key != "created":
            raise JobError(
                f"spec field {key!r} is {clean[key]!r} but the job's {key} is {header[key]!r}; "
                f"leave {key!r} out of the spec."
            )
    root = jobs_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    job_dir = root / job_id
    try:
        job_dir.mkdir()
    except FileExistsError:
        raise JobError(f"job {job_id!r} already exists in {root}; choose another id.") from None
    doc = tomlkit.document()
    doc.add(tomlkit.comment("persona-tui job spec: the frozen inputs of this job."))
    for key, value in {**header, **{k: v for k, v in clean.items() if k not in header}}.items():
        doc[key] = value
    _atomic_write_text(job_dir / SPEC_FILE, tomlkit.dumps(doc), fsync=True)
    (job_dir / EVENTS_FILE).touch()
    (job_dir / LOG_FILE).touch()
    status = JobStatus(id=job_id, kind=kind, state="queued", dir=job_dir, worker=worker, created=now)
    _write_status_raw(job_dir, status.to_dict())
    return job_dir


def start_job(job_dir: str | os.PathLike[str], nice: int = DEFAULT_NICE) -> int:
    """Launch `python -m <worker> <job_dir>` detached (own session, nice +10); return its pid.

    The worker's stdout and stderr go to log.txt. Only a queued job starts; to run a finished,
    failed or died job again, `requeue_job` it first (events and log are kept).
    """
    job_dir = Path(job_dir).resolve()
    env = dict(os.environ)
    env[NICE_ENV] = str(nice)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Check, launch and record under the status lock, so two launchers never start two workers
    # (the worker waits on the same lock before it writes "running").
    with _status_lock(job_dir):
        raw = _read_status_raw(job_dir)
        if raw.get("state") != "queued" or raw.get("pid"):
            raise JobError(
                f"job {job_dir.name} is {raw.get('state')}"
                + (f" (pid {raw.get('pid')})" if raw.get("pid") else "")
                + "; only a queued job can start (requeue it to run it again)."
            )
        worker = raw.get("worker") or read_spec(job_dir).get("worker") or "trainers.worker"
        worker = MOVED_WORKERS.get(worker, worker)
        with open(job_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", worker, str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        raw.update(pid=proc.pid, host=socket.gethostname(), launched=time.time())
        _write_status_raw(job_dir, raw)
    # Reap the child when it ends so a long-lived launcher (the TUI) keeps no zombies.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def requeue_job(job_dir: str | os.PathLike[str]) -> JobStatus:
    """Put a job that is no longer running back to queued, keeping events.jsonl and log.txt.

    Resuming (a new worker on the same directory, from its last checkpoint) is requeue + start.
    """
    job_dir = Path(job_dir).resolve()
    status = read_status(job_dir)
    if not status.terminal:
        raise JobError(f"job {status.id} is {status.state}; cancel it before running it again.")
    with _status_lock(job_dir):
        raw = _read_status_raw(job_dir)
        raw.update(
            state="queued",
            pid=None,
            host="",
            started=None,
            heartbeat=None,
            ended=None,
            error="",
            message="",
            inline=False,
            attempt=int(raw.get("attempt", 1)) + 1,
        )
        raw.pop("launched", None)
        _write_status_raw(job_dir, raw)
    (job_dir / CHILDREN_FILE).unlink(missing_ok=True)  # the last attempt's groups are gone with it
    _append_event(job_dir, {"event": "requeued", "previous_state": status.state})
    return read_status(job_dir)


# ----------------------------------------------------------------------------- reading


def _stale_after(stale_after: float | None) -> float:
    if stale_after is not None:
        return stale_after
    try:
        return float(os.environ.get(STALE_ENV, DEFAULT_STALE_S))
    except ValueError:
        return DEFAULT_STALE_S


def _pid_is_job(pid: int, job_dir: Path, inline: bool = False) -> bool:
    """True while `pid` is alive and (where /proc can tell) is the worker of `job_dir`.

    An inline job runs in a foreground CLI whose command line does not name the job dir.
    """
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False  # a zombie is a dead worker nobody has reaped yet
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        except PermissionError:
            return True
        return inline or str(job_dir) in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(job_dir: str | os.PathLike[str], stale_after: float | None = None) -> JobStatus:
    """The job's status; a running or launched job whose worker is gone reads as `died`.

    `stale_after` (seconds; default 10 or env PERSONA_TUI_JOB_STALE_S) is how old the heartbeat
    must be before a vanished worker is declared died. A job on another host is judged by its
    heartbeat alone.
    """
    job_dir = Path(job_dir).resolve()
    status = JobStatus.from_dict(job_dir, _read_status_raw(job_dir))
    if status.state not in LIVE or not status.pid:
        return status
    last = status.heartbeat or status.extra.get("launched") or status.started or status.created
    age = time.time() - last if last else float("inf")
    if age <= _stale_after(stale_after):
        return status
    same_host = not status.host or status.host == socket.gethostname()
    if same_host and (status.pid == os.getpid() or _pid_is_job(status.pid, job_dir, status.inline)):
        return status
    # Re-read: the worker may have finished between the first read and the pid check.
    status = JobStatus.from_dict(job_dir, _read_status_raw(job_dir))
    if status.state not in LIVE:
        return status
    tail = log_tail(job_dir, 15).rstrip()
    where = f"worker process {status.pid}" + ("" if same_host else f" on {status.host}")
    hint = _memory_hint(job_dir) if same_host else ""
    status.error = (
        f"The {where} is gone and its heartbeat stopped {age:.0f} s ago."
        + (f" {hint}" if hint else "")
        + (f"\nLast lines of {LOG_FILE}:\n{tail}" if tail else f" {LOG_FILE} is empty.")
    )
    status.state = "died"
    return status


# A worker killed outright (SIGKILL) writes nothing; Linux's out-of-memory killer does just that.
# When its last reported memory was this close to the machine's, say so.
OOM_SHARE = 0.85


def _memory_hint(job_dir: Path) -> str:
    """ "It probably ran out of memory ..." when the job's last `rss_mb` event neared the RAM."""
    try:
        with open(job_dir / EVENTS_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
        total_kb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, ValueError):
        return ""
    for line in reversed(lines):
        try:
            rss = json.loads(line).get("rss_mb")
        except (ValueError, AttributeError):
            continue
        if isinstance(rss, (int, float)):
            if rss * 1024 >= OOM_SHARE * total_kb:
                return (
                    f"Its memory had reached {rss / 1024:.1f} of {total_kb / 2**20:.1f} GiB, so it was most "
                    "likely killed for running out of memory: lower batch_size or max_seq_length, or "
                    "turn on gradient_checkpointing."
                )
            return ""
    return ""


def list_jobs(workspace: str | os.PathLike[str], stale_after: float | None = None) -> list[JobStatus]:
    """Every job of the workspace, oldest first; directories without a readable status are skipped."""
    root = jobs_root(workspace)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.is_dir() and (d / STATUS_FILE).is_file():
            try:
                out.append(read_status(d, stale_after))
            except JobError:
                continue
    out.sort(key=lambda s: (s.created or 0, s.id))
    return out


def read_events(job_dir: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events appended since byte `offset`, and the offset to pass next time.

    Only complete lines are returned (a line being written is left for the next call); a line
    that is not a JSON object is skipped.
    """
    path = Path(job_dir) / EVENTS_FILE
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events, offset + end + 1


def log_tail(job_dir: str | os.PathLike[str], n: int = 20) -> str:
    """The last `n` lines of the job's log.txt ("" when there is none)."""
    path = Path(job_dir) / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:]) + ("\n" if lines else "") if n > 0 else ""


def watch(
    job_dir: str | os.PathLike[str], interval: float = 0.5, stale_after: float | None = None
) -> Iterator[tuple[JobStatus, list[dict[str, Any]]]]:
    """Yield (status, new events) every `interval` seconds until the job ends (that status last)."""
    offset = 0
    while True:
        status = read_status(job_dir, stale_after)
        events, offset = read_events(job_dir, offset)
        if status.terminal:
            more, offset = read_events(job_dir, offset)
            yield status, events + more
            return
        yield status, events
        time.sleep(interval)


def cancel_job(job_dir: str | os.PathLike[str], force: bool = False) -> bool:
    """Ask the job to stop: SIGTERM to the worker's process group (SIGKILL with `force`).

    The worker sets `job.cancelled`, the work saves what it can and returns, and the job ends
    `cancelled`. A queued job that never launched is marked cancelled at once. Returns False
    when there was nothing to cancel.
    """
    job_dir = Path(job_dir).resolve()
    status = read_status(job_dir)
    if status.terminal:
        return False
    if not status.pid:
        with _status_lock(job_dir):
            raw = _read_status_raw(job_dir)
            if raw.get("state") == "queued" and not raw.get("pid"):
                raw.update(state="cancelled", ended=time.time(), message="cancelled before start")
                _write_status_raw(job_dir, raw)
                return True
        return cancel_job(job_dir, force)
    if status.host and status.host != socket.gethostname():
        raise JobError(f"job {status.id} runs on {status.host}; cancel it from that machine.")
    if not _pid_is_job(status.pid, job_dir, status.inline) and status.pid != os.getpid():
        return False
    if status.state == "queued":
        # Launched but not yet handling signals: leave a request the worker reads as it begins.
        with _status_lock(job_dir):
            raw = _read_status_raw(job_dir)
            if raw.get("state") == "queued":
                raw["cancel_requested"] = True
                _write_status_raw(job_dir, raw)
                return True
    sig = signal.SIGKILL if force else signal.SIGTERM
    try:
        if status.inline:
            os.kill(status.pid, sig)  # a foreground CLI: never signal the shell's process group
        else:
            os.killpg(status.pid, sig)
    except ProcessLookupError:
        return False
    if force:
        for pgid in _child_groups(job_dir):  # e.g. accelerate's ranks, in a session of their own
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with _status_lock(job_dir):
            raw = _read_status_raw(job_dir)
            if raw.get("state") in LIVE:
                raw.update(state="cancelled", ended=time.time(), message="killed")
                _write_status_raw(job_dir, raw)
    return True


def register_child_group(job_dir: str | os.PathLike[str], pgid: int) -> None:
    """Note a process group the worker started with a session of its own (so a plain cancel's
    SIGTERM to the worker's group does not reach it and the worker can stop it in order);
    `cancel_job(force=True)` kills these too."""
    with open(Path(job_dir) / CHILDREN_FILE, "a", encoding="utf-8") as f:
        f.write(f"{int(pgid)}\n")


def unregister_child_group(job_dir: str | os.PathLike[str], pgid: int) -> None:
    """Forget a group once its leader has exited: its id may be reused by an unrelated process
    group, which a later forced cancel must not kill."""
    path = Path(job_dir) / CHILDREN_FILE
    left = [g for g in _child_groups(Path(job_dir)) if g != int(pgid)]
    try:
        if left:
            path.write_text("".join(f"{g}\n" for g in left), encoding="utf-8")
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # nothing to forget, or a read-only job folder: a stale id only costs a failed kill


def _child_groups(job_dir: Path) -> list[int]:
    try:
        return [int(x) for x in (job_dir / CHILDREN_FILE).read_text(encoding="utf-8").split() if x.strip().isdigit()]
    except OSError:
        return []


def _append_event(job_dir: Path, fields: Mapping[str, Any]) -> None:
    line = json.dumps({"t": time.time(), **fields}, default=str)
    with open(job_dir / EVENTS_FILE, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# ----------------------------------------------------------------------------- the worker side


class JobReporter:
    """What the work sees: its spec, and the ways to report progress, events, logs and failure.

    `cancelled` becomes True on SIGTERM (or Ctrl-C in the foreground); the work checks it (or
    calls `raise_if_cancelled()`), saves a checkpoint and returns.
    """

    def __init__(self, job_dir: Path, spec: dict[str, Any], inline: bool = False) -> None:
        self.dir = job_dir
        self.spec = spec
        self.cancelled = False
        self._inline = inline
        self._lock = threading.Lock()
        self._status = _read_status_raw(job_dir)
        self._dirty = False
        self._last_write = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        # A service's work sets this ("stopped") so the job ends in it rather than finished.
        self.end_state: str | None = None

    # -- used by the work
    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        with self._lock:
            self._status["done"] = done
            if total is not None:
                self._status["total"] = total
            if message:
                self._status["message"] = message
            self._dirty = True
            now = time.monotonic()
            if now - self._last_write >= 0.2 or (total and done >= total):
                self._flush_locked()

    def event(self, **fields: Any) -> None:
        _append_event(self.dir, fields)

    def log(self, msg: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with open(self.dir / LOG_FILE, "a", encoding="utf-8") as f:
            for line in str(msg).splitlines() or [""]:
                f.write(f"[{stamp}] {line}\n")

    def set_status(self, **fields: Any) -> None:
        """Write fields into status.json now (a service's `starting`/`ready` state and its url)."""
        self._set(**fields)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled()

    def fail(self, msg: str) -> NoReturn:
        raise JobFailed(msg)

    # -- used by run_worker
    def _flush_locked(self) -> None:
        self._status["heartbeat"] = time.time()
        with _status_lock(self.dir):
            _write_status_raw(self.dir, self._status)
        self._dirty = False
        self._last_write = time.monotonic()

    def _set(self, **fields: Any) -> None:
        with self._lock:
            self._status.update(fields)
            self._flush_locked()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                self._flush_locked()

    def _begin(self) -> None:
        with self._lock, _status_lock(self.dir):
            # Re-read: the launcher may have added its fields, or a cancel may have come
            # before this worker could handle signals.
            self._status = _read_status_raw(self.dir)
            if self._status.pop("cancel_requested", False):
                self.cancelled = True
            self._status.update(
                state="running",
                pid=os.getpid(),
                host=socket.gethostname(),
                started=time.time(),
                ended=None,
                error="",
                inline=self._inline,
                heartbeat=time.time(),
            )
            _write_status_raw(self.dir, self._status)
        self._beat = threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True)
        self._beat.start()

    def _end(self, state: str, error: str = "") -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        # The last event goes first: a viewer that sees the terminal state has every event.
        self.event(event="ended", state=state, **({"error": error} if error else {}))
        fields: dict[str, Any] = {"state": state, "ended": time.time(), "error": error}
        if state == "cancelled" and not self._status.get("message"):
            fields["message"] = "cancelled"
        self._set(**fields)


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"missing key {exc.args[0]!r}"
    first = text.splitlines()[0].strip() if text else ""
    return first or type(exc).__name__


def _resolve_work(kinds: Mapping[str, Any], kind: str) -> Callable[[JobReporter], Any]:
    """kinds maps a job kind to a module name (its `run` is called), 'module:function', or a callable."""
    if kind not in kinds:
        raise JobFailed(f"job kind {kind!r} is unknown here; known kinds: {', '.join(sorted(kinds))}.")
    target = kinds[kind]
    if callable(target):
        return target
    module_name, _, attr = str(target).partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr or "run")


def _execute(job_dir: Path, kinds: Mapping[str, Any], inline: bool) -> JobStatus:
    job_dir = Path(job_dir).resolve()
    spec = read_spec(job_dir)
    job = JobReporter(job_dir, spec, inline=inline)

    def on_signal(signum: int, frame: Any) -> None:
        if job.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C in the foreground stops at once
        job.cancelled = True
        job.log(f"received {signal.Signals(signum).name}: cancelling")

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        sigs = (signal.SIGTERM, signal.SIGINT) if inline else (signal.SIGTERM,)
        for s in sigs:
            previous[s] = signal.signal(s, on_signal)
    job._begin()
    job.event(event="started", pid=os.getpid(), attempt=job._status.get("attempt", 1))
    try:
        work = _resolve_work(kinds, str(spec.get("kind", "")))
        work(job)
    except JobCancelled:
        job._end("cancelled")
    except JobFailed as e:
        job.log(f"failed: {e}")
        job._end("failed", _one_sentence(e))
    except KeyboardInterrupt:
        job._end("cancelled")
        raise
    except BaseException as e:  # noqa: BLE001 - any crash of the work is the job's failure
        with open(job_dir / LOG_FILE, "a", encoding="utf-8") as f:
            traceback.print_exc(file=f)
        job._end("failed", _one_sentence(e))
        if not isinstance(e, Exception):
            raise
    else:
        job._end(job.end_state or ("cancelled" if job.cancelled else "finished"))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return read_status(job_dir)


def run_worker(job_dir: str | os.PathLike[str], kinds: Mapping[str, Any]) -> int:
    """The body of a `python -m <worker> <job_dir>` process: exit code 0 unless the job failed."""
    nice = os.environ.pop(NICE_ENV, "")
    if nice:
        with contextlib.suppress(OSError, ValueError):
            os.nice(int(nice))
    status = _execute(Path(job_dir), kinds, inline=False)
    return 1 if status.state == "failed" else 0


def run_job_inline(job_dir: str | os.PathLike[str], kinds: Mapping[str, Any]) -> JobStatus:
    """Run a queued job's work in this process (tests, CLIs in the foreground); same files.

    Ctrl-C sets `job.cancelled` once (the work can save and return); a second one interrupts.
    """
    job_dir = Path(job_dir).resolve()
    raw = _read_status_raw(job_dir)
    if raw.get("state") != "queued" or raw.get("pid"):
        raise JobError(f"job {job_dir.name} is {raw.get('state')}; only a queued job can run (requeue it first).")
    return _execute(job_dir, kinds, inline=True)


# ----------------------------------------------------------------------------- services
#
# A service job keeps a server running for others to use (the OpenAI-compatible server of an
# export, a teacher server). Its spec holds a [service] table:
#
#   command = ["python", "-m", "llama_cpp.server", ...]   the server's argv (no secrets in it)
#   url = "http://127.0.0.1:8000/v1"                       what clients use; shown once ready
#   ready_url = "http://127.0.0.1:8000/v1/models"          a GET answering 200 means ready
#   idle_timeout_s = 1800                                  stop after this long without a request (0: never)
#   api_key_env = "MY_KEY"                                 the environment variable holding the key
#   api_key_to = "API_KEY"                                 the variable the server reads it from
#
# The key itself never enters the spec, status, events or logs: the worker reads it from its own
# environment (inherited from whoever started the job) and hands it to the server the same way.
# Activity is what the server writes: every request it answers adds an access-log line to
# server.log, so a log that has not grown for `idle_timeout_s` means no one used the service.

SERVICE_KIND = "service"
SERVICE_WORKER = "supervisor.service_worker"
# Worker modules that moved: a job directory written before the move names the old module in its
# status and spec (on a user's disk, never rewritten), so starting it runs the new one.
MOVED_WORKERS = {"sessions.service_worker": SERVICE_WORKER}
SERVER_LOG = "server.log"
READY_TIMEOUT_S = 120.0


def create_service_job(
    workspace: str | os.PathLike[str],
    service: Mapping[str, Any],
    spec: Mapping[str, Any] | None = None,
    job_id: str | None = None,
) -> Path:
    """A queued service job; `service` is the [service] table above (the key's value never goes in)."""
    table = dict(service)
    if not table.get("command") or not table.get("url"):
        raise JobError("a service needs a command and a url.")
    table.setdefault("ready_url", str(table["url"]).rstrip("/") + "/models")
    table.setdefault("idle_timeout_s", 0)
    return create_job(
        workspace, SERVICE_KIND, {**dict(spec or {}), "service": table}, worker=SERVICE_WORKER, job_id=job_id
    )


def _service_answers(url: str, key: str) -> bool:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def _last_words(path: Path) -> str:
    """A server's last line of output (its exception's message when it failed to start)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no output"
    return next((line for line in reversed(lines) if line), "no output").rstrip(".")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_service(job: JobReporter) -> None:
    """The work of a service job: start the server, wait until it answers (`ready`, with its url),
    keep it up until cancelled or idle, then stop it (`stopped`); a server that exits on its own
    fails the job with its last words."""
    service = job.spec.get("service") or {}
    command = [str(c) for c in service.get("command") or []]
    url = str(service.get("url") or "")
    ready_url = str(service.get("ready_url") or url.rstrip("/") + "/models")
    idle = float(service.get("idle_timeout_s") or 0)
    key_env = str(service.get("api_key_env") or "")
    if not command or not url:
        job.fail("the service's spec has no command or url; create it with create_service_job.")
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the access log must reach server.log as it happens
    env.pop(NICE_ENV, None)
    key = ""
    if key_env:
        key = os.environ.get(key_env, "")
        if not key:
            job.fail(
                f"the environment variable {key_env} (the service's API key) is not set where the service "
                f"started; export {key_env}=... before starting it."
            )
        env[str(service.get("api_key_to") or "API_KEY")] = key
    log_path = job.dir / SERVER_LOG
    job.set_status(state="starting", url=url, message=f"starting {url}")
    job.event(event="starting", url=url)
    job.log(f"starting the server for {url} (its output: {log_path})")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    register_child_group(job.dir, proc.pid)
    reason = ""
    try:
        ready_timeout = float(service.get("ready_timeout_s") or READY_TIMEOUT_S)
        deadline = time.monotonic() + ready_timeout
        while not _service_answers(ready_url, key):
            if job.cancelled:
                reason = "cancelled before it was ready"
                break
            if proc.poll() is not None:
                job.fail(
                    f"the server exited with code {proc.returncode} before answering "
                    f"({_last_words(log_path)}); its output is in {log_path}."
                )
            if time.monotonic() > deadline:
                job.fail(
                    f"the server did not answer at {url} within {ready_timeout:.0f} s; its output is in {log_path}."
                )
            time.sleep(0.25)
        if not reason:
            job.set_status(state="ready", message=f"ready at {url}", ready=time.time())
            job.event(event="ready", url=url)
            job.log(f"ready at {url}" + (f"; stops after {idle:g} s without a request" if idle else ""))
            size, last = _size_of(log_path), time.monotonic()
            while True:
                if job.cancelled:
                    reason = "cancelled"
                    break
                if proc.poll() is not None:
                    job.fail(
                        f"the server exited with code {proc.returncode} ({_last_words(log_path)}); "
                        f"its output is in {log_path}."
                    )
                now_size = _size_of(log_path)
                if now_size != size:
                    size, last = now_size, time.monotonic()
                elif idle and time.monotonic() - last >= idle:
                    reason = f"idle for {idle:g} s"
                    break
                time.sleep(0.25)
    finally:
        _stop_group(proc)
        unregister_child_group(job.dir, proc.pid)
    job.log(f"stopped: {reason}")
    job.event(event="stopped", reason=reason)
    job.set_status(message=f"stopped: {reason}")
    job.end_state = "stopped"


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
