"""Following a job from the command line: a rich progress bar fed by the job's files.

The CLI commands that run long work (`jobs --watch`, `data`, `train`, `export`, `eval`, `demo`)
all follow jobs the same way any viewer does: by reading status.json and events.jsonl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from supervisor import jobs


def make_progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}", style="dim"),
        console=console,
        transient=False,
    )


def follow(
    job_dir: Path,
    label: str = "",
    console: Console | None = None,
    progress: Progress | None = None,
    on_events: Callable[[list[dict[str, Any]]], None] | None = None,
    interval: float = 0.5,
) -> jobs.JobStatus:
    """Draw the job's progress until it ends; return its final status."""
    own = progress is None
    progress = progress or make_progress(console)
    label = label or Path(job_dir).name
    task = progress.add_task(label, total=None, message="")
    status = jobs.read_status(job_dir)
    if own:
        progress.start()
    try:
        for status, events in jobs.watch(job_dir, interval=interval):
            if on_events and events:
                on_events(events)
            total = status.total or None
            message = status.message[:60] if status.message else status.state
            progress.update(task, total=total, completed=status.done, message=message)
        # A finished job fills its bar; a cancelled or failed one keeps what it did (348/600,
        # not 600/600: the bar must not say a stopped job completed).
        done = (status.total or status.done) if status.state == "finished" else status.done
        progress.update(task, message=status.state, completed=done)
    except KeyboardInterrupt:
        progress.update(task, message="detached (the job goes on)")
        raise
    finally:
        if own:
            progress.stop()
    return status


def wait_started(job_dir: Path, timeout: float = 10.0) -> jobs.JobStatus:
    """Wait until a freshly started job leaves `queued` (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    status = jobs.read_status(job_dir)
    while status.state == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
        status = jobs.read_status(job_dir)
    return status
