"""`persona-tui jobs SESSION`: list the session's jobs, follow one, cancel one, show what made one
(its manifest), compare two jobs' manifests, or convert a job's events for TensorBoard or a sheet."""

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
    group.add_argument(
        "--manifest",
        metavar="ID",
        help="print what made a job: commit, package versions, model and data hashes, seed, "
        "settings, hardware (manifest.json)",
    )
    group.add_argument(
        "--compare",
        metavar="ID",
        nargs="+",
        help="say how the manifests of two or more jobs differ (packages, model or data "
        "hashes, hardware), each against the first",
    )
    group.add_argument(
        "--export-events", metavar="ID", help="convert a job's events.jsonl to --format tensorboard|csv (see --out)"
    )
    parser.add_argument(
        "--format",
        dest="event_format",
        choices=("tensorboard", "csv"),
        default="csv",
        help="with --export-events: csv (a file) or tensorboard (a folder of event files)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="with --export-events: where to write (default: events.csv or tensorboard-export/ in the job's folder)",
    )
    parser.add_argument("--json", action="store_true", help="with --manifest: the whole JSON, not the summary")
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
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    from sessions.workspace import workspace_for
    from supervisor import jobs

    if not args.session.is_file():
        print(f"persona-tui: {args.session} is not a session file.", file=sys.stderr)
        return 2
    workspace = workspace_for(args.session)
    console = Console()
    if args.compare:
        return _compare(args, workspace)
    job_id = args.watch or args.cancel or args.log or args.manifest or args.export_events
    if job_id:
        job_dir = _job_dir(args, workspace, job_id)
        if job_dir is None:
            return 2
        if args.manifest:
            return _manifest(job_dir, args.json)
        if args.export_events:
            return _export_events(job_dir, args.event_format, args.out)
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
    # The id is what every other command takes, so it is never cut or broken. Train ids run to
    # ~50 characters, so under 150 columns each job takes two lines (id, then the rest) instead of
    # a table row whose columns would be cut.
    colour = {
        "running": "cyan",
        "finished": "green",
        "failed": "red",
        "died": "red",
        "cancelled": "yellow",
        "starting": "cyan",
        "ready": "green",
        "stopped": "yellow",
    }
    rows = []
    for s in listed:
        prog = f"{s.fraction:.0%}" if s.fraction is not None else "-"
        note = s.error if s.state in ("failed", "died") else s.message
        note = (note or "").splitlines()[0][:60] if note else ""
        if s.url and s.state in ("starting", "ready"):
            note = f"{s.state} at {s.url}"  # a service's URL whole, never cut
        state = f"[{colour.get(s.state, 'white')}]{s.state}[/]"
        rows.append((s.id, s.kind, state, prog, _age(s.started), _age(s.heartbeat), escape(note)))
    if console.width >= 150:
        table = Table()
        table.add_column("id", no_wrap=True)
        for name in ("kind", "state", "progress", "started", "heartbeat"):
            table.add_column(name, no_wrap=True)
        table.add_column("message", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return 0
    for job_id, kind, state, prog, started, beat, note in rows:
        console.print(job_id, style="bold", soft_wrap=True)
        rest = f"{kind} · {state} · {prog} · started {started} · heartbeat {beat}"
        console.print(Padding(f"{rest}{' · ' + note if note else ''}", (0, 0, 0, 4)))
    return 0


def _job_dir(args: argparse.Namespace, workspace: Path, job_id: str) -> Path | None:
    """The job's folder, or None after saying in one sentence why there is none."""
    from supervisor import jobs

    try:
        job_dir = jobs.jobs_root(workspace) / jobs.check_job_id(job_id)
    except ValueError as error:
        print(f"persona-tui: {error}", file=sys.stderr)
        return None
    if not (job_dir / "status.json").exists():
        print(
            f"persona-tui: no job {job_id!r} in {jobs.jobs_root(workspace)}; "
            f"'persona-tui jobs {args.session}' lists them.",
            file=sys.stderr,
        )
        return None
    return job_dir


def _manifest(job_dir: Path, as_json: bool) -> int:
    from sessions.manifest import MANIFEST_FILE, format_manifest, manifest_summary, read_manifest

    manifest = read_manifest(job_dir)
    if manifest is None:
        print(
            f"persona-tui: job {job_dir.name} has no {MANIFEST_FILE} (its worker has not started, or it was "
            "made before jobs recorded one).",
            file=sys.stderr,
        )
        return 2
    if as_json:
        print(format_manifest(manifest))
    else:
        print("\n".join(manifest_summary(manifest)))
        print(f"(all of it: {job_dir / MANIFEST_FILE}, or --manifest {job_dir.name} --json)")
    return 0


def _compare(args: argparse.Namespace, workspace: Path) -> int:
    from sessions.manifest import job_differences

    if len(args.compare) < 2:
        print("persona-tui: --compare needs at least two job ids.", file=sys.stderr)
        return 2
    dirs = []
    for job_id in args.compare:
        job_dir = _job_dir(args, workspace, job_id)
        if job_dir is None:
            return 2
        dirs.append(job_dir)
    lines = job_differences(dirs)
    if not lines:
        print(f"same packages, model and data files and hardware: {', '.join(args.compare)}")
        return 0
    print("\n".join(f"differs: {line}" for line in lines))
    return 1


def _export_events(job_dir: Path, fmt: str, out: Path | None) -> int:
    from trainers.train.event_export import ExportEventsError, export_events

    try:
        target, count = export_events(job_dir, fmt, out)
    except (ExportEventsError, OSError) as error:
        print(f"persona-tui: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {count} values of {job_dir.name} to {target}"
        + (f"; view them with: tensorboard --logdir {target}" if fmt == "tensorboard" else "")
    )
    return 0
