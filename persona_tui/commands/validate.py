"""`persona-tui validate SESSION`: OK, or every problem one per line (for sessions kept in git)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate",
        help="check a session file: OK (exit 0) or every problem (exit 2)",
        description="Check a session file without changing it. Prints OK and exits 0, or "
        "prints every problem, one per line, and exits 2.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    return parser


def run(args: argparse.Namespace) -> int:
    from sessions.validate import validate_file

    problems = validate_file(args.session)
    if not problems:
        print("OK")
        return 0
    for problem in problems:
        print(problem)
    return 2
