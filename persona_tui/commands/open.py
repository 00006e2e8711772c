"""`persona-tui open SESSION` (or just `persona-tui SESSION`): the workbench on one session."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "open",
        help="open a session in the workbench (or just: persona-tui SESSION)",
        description="Open a session file in the terminal workbench.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    return parser


def run(args: argparse.Namespace) -> int:
    return open_session(args.session)


def open_session(path: Path) -> int:
    """Load `path` (refusing a bad file before the UI starts), run the app, save on the way out."""
    from sessions.validate import SessionError

    if not path.exists() and not path.is_symlink():
        print(
            f"persona-tui: {path} does not exist; create it with 'persona-tui new {path}' "
            "(add --demo to start from the example persona).",
            file=sys.stderr,
        )
        return 2
    from persona_tui.app import make_app

    try:
        app = make_app(path)
    except SessionError as error:
        more = len(error.problems) - 1
        hint = f" Run 'persona-tui validate {path}' to list all of them." if more > 0 else ""
        print(f"persona-tui: {str(error).rstrip('.')}.{hint}", file=sys.stderr)
        return 2
    app.run()
    # The app saves before it quits; this covers an exit it did not see coming.
    if app.dirty:
        try:
            app.session_file.save()
        except (OSError, ValueError) as error:
            print(f"persona-tui: your last changes to {path} are not saved: {error}", file=sys.stderr)
            return 1
    return app.return_code or 0
