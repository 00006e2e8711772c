"""`persona-tui demo [DIR]`: the whole flow on the demo persona, headless, then a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="run every stage on the demo persona, headless, and sum up",
        description="Write (or reuse) the demo session in DIR and run, headless, every stage of "
        "the flow that exists: build data, train, export, chat, evaluate.",
    )
    parser.add_argument(
        "dir",
        type=Path,
        nargs="?",
        default=Path("persona-demo"),
        metavar="DIR",
        help="where the demo session lives (default: ./persona-demo)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="each stage at the smallest size that still runs it for real"
    )
    parser.add_argument("--tui", action="store_true", help="open the workbench on the result")
    return parser


def run(args: argparse.Namespace) -> int:
    from evaluators.demo import run_demo  # the flow lives in the core, not in the UI
    from persona_tui.job_progress import follow

    def follow_job(job_dir, label, console):
        return follow(job_dir, label, console=console)

    try:
        session_path = run_demo(args.dir, args.quick, follow=follow_job)
    except ValueError as error:  # SessionError and the stages' user errors
        print(f"persona-tui: {error}", file=sys.stderr)
        return 2
    if args.tui:
        from persona_tui.commands.open import open_session

        return open_session(Path(session_path))
    return 0
