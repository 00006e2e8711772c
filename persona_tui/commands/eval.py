"""`persona-tui eval SESSION --eval ID`: run one evaluation headless, with progress, then print
its tables (and keep a summary under the evaluation in the session file).

The work runs as an eval job (its own process, like any job), so `persona-tui jobs` and the
Evaluate pane can follow it too; Ctrl-C here cancels it and prints what was scored so far.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="run an evaluation of a session headless and print its tables",
        description="Run the evaluation ID of a session as a job, show its progress, print its "
        "result tables and record a summary under the evaluation in the session file.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    parser.add_argument("--eval", dest="eval_id", required=True, metavar="ID", help="the evaluation's id")
    parser.add_argument(
        "--job",
        metavar="JOB_ID",
        default=None,
        help="print the tables of this earlier job of the evaluation instead of running it",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write the summary into the session file")
    return parser


def _print_tables(scores: dict) -> None:
    from rich.console import Console

    from evaluators.tables import problems_text, tables_for

    console = Console()
    for table in tables_for(scores):
        console.print(table)
    extra = problems_text(scores)
    if extra.plain:
        console.print(extra)


def _watch(job_dir: Path) -> str:
    """Follow the job until it ends; Ctrl-C cancels it (twice: stop waiting). Returns its state."""
    from supervisor import jobs

    tty = sys.stderr.isatty()
    last_line = ""
    cancelled = False
    while True:
        try:
            status = jobs.read_status(job_dir)
            if status.terminal:
                break
            frac = status.fraction
            pct = f"{frac:4.0%}" if frac is not None else "  … "
            line = f"{pct} {int(status.done)}/{int(status.total or 0)} {status.message}"[:100]
            if tty:
                sys.stderr.write("\r" + line.ljust(100))
                sys.stderr.flush()
            elif line != last_line and (not last_line or status.done % 10 == 0):
                print(line, file=sys.stderr)
            last_line = line
            time.sleep(0.5)
        except KeyboardInterrupt:
            if cancelled:
                print(f"\nstopped waiting; the job goes on in {job_dir}", file=sys.stderr)
                return "running"
            cancelled = True
            print("\ncancelling (Ctrl-C again to stop waiting)…", file=sys.stderr)
            jobs.cancel_job(job_dir)
    if tty:
        sys.stderr.write("\r" + " " * 100 + "\r")
    return status.state


def run(args: argparse.Namespace) -> int:
    from evaluators.evaluate.job import create_eval_job, record_results
    from evaluators.evaluate.reader import load_scores
    from sessions.store import SessionFile
    from sessions.validate import SessionError
    from supervisor import jobs

    try:
        sf = SessionFile.load(args.session)
    except SessionError as error:
        print(f"persona-tui: {error}", file=sys.stderr)
        return 2
    if args.job:
        try:
            _print_tables(load_scores(jobs.jobs_root(sf.workspace) / jobs.check_job_id(args.job)))
        except ValueError as error:
            print(f"persona-tui: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        from evaluators.experiments.models import run_resolver  # base, run:ID, job:ID entries

        job_dir = create_eval_job(sf, args.eval_id, run_resolver(sf.session, sf.workspace))
    except ValueError as error:
        problems = getattr(error, "problems", None) or [str(error)]
        for p in problems:
            print(f"persona-tui: {p}", file=sys.stderr)
        return 2
    print(f"evaluation {args.eval_id!r}: job {job_dir.name} (log: {job_dir / jobs.LOG_FILE})", file=sys.stderr)
    jobs.start_job(job_dir)
    state = _watch(job_dir)
    status = jobs.read_status(job_dir)
    try:
        scores = load_scores(job_dir)
    except ValueError:
        scores = None
    if scores is not None:
        _print_tables(scores)
    if state == "finished":
        if not args.no_record and scores is not None:
            try:
                record_results(SessionFile.load(args.session), args.eval_id, job_dir)
            except (ValueError, OSError) as error:
                print(f"persona-tui: the summary was not saved in {args.session}: {error}", file=sys.stderr)
        return 0
    reason = status.error or status.message or state
    print(f"persona-tui: the evaluation ended {state}: {reason}", file=sys.stderr)
    if state == "failed":
        tail = jobs.log_tail(job_dir, 8).rstrip()
        if tail:
            print(tail, file=sys.stderr)
    return 1
