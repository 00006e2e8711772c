"""`persona-tui jobs SESSION`: list the session's jobs, follow one, or cancel one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "jobs",
        help="list the session's jobs; --watch ID follows one, --cancel ID stops one",
        description="List the jobs of a session's workspace (training, data, export, evaluation) "
        "with their state. A job whose worker is gone and whose heartbeat is stale reads 'died'.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--watch", metavar="ID", help="follow a job with a progress bar until it ends")
    group.add_argument("--cancel", metavar="ID", help="ask a job to stop (it saves a checkpoint first)")
    group.add_argument("--log", metavar="ID", help="print the last lines of a job's log")
    return parser


def _age(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0, int(time.time() - t))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    return f"{s // 3600}h ago"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sessions import jobs
    from sessions.workspace import workspace_for

    if not args.session.is_file():
        print(f"persona-tui: {args.session} is not a session file.", file=sys.stderr)
        return 2
    workspace = workspace_for(args.session)
    console = Console()
    job_id = args.watch or args.cancel or args.log
    if job_id:
        try:
            job_dir = jobs.jobs_root(workspace) / jobs.check_job_id(job_id)
        except ValueError as error:
            print(f"persona-tui: {error}", file=sys.stderr)
            return 2
        if not (job_dir / "status.json").exists():
            print(f"persona-tui: no job {job_id!r} in {jobs.jobs_root(workspace)}; "
                  f"'persona-tui jobs {args.session}' lists them.", file=sys.stderr)
            return 2
        if args.log:
            print(jobs.log_tail(job_dir, 40))
            return 0
        if args.cancel:
            sent = jobs.cancel_job(job_dir)
            print(f"{job_id}: {'cancel requested' if sent else 'not running'}")
            return 0
        from persona_tui.job_progress import follow

        try:
            status = follow(job_dir, job_id, console=console)
        except KeyboardInterrupt:
            print(f"\nstopped watching; {job_id} goes on.")
            return 0
        if status.state in ("failed", "died"):
            print(f"{job_id} {status.state}: {status.error}", file=sys.stderr)
            return 1
        print(f"{job_id} {status.state}")
        return 0
    listed = jobs.list_jobs(workspace)
    if not listed:
        print(f"no jobs yet in {jobs.jobs_root(workspace)}")
        return 0
    table = Table("id", "kind", "state", "progress", "started", "heartbeat", "message")
    colour = {"running": "cyan", "finished": "green", "failed": "red", "died": "red", "cancelled": "yellow"}
    for s in listed:
        prog = f"{s.fraction:.0%}" if s.fraction is not None else "-"
        note = s.error if s.state in ("failed", "died") else s.message
        table.add_row(s.id, s.kind, f"[{colour.get(s.state, 'white')}]{s.state}[/]", prog,
                      _age(s.started), _age(s.heartbeat), (note or "").splitlines()[0][:60] if note else "")
    console.print(table)
    return 0
