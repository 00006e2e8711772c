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
    import gc

    # Start-up builds many objects that all stay alive: collecting garbage among them only
    # delays the first frame (~12% here). The app turns the collector back on once it has
    # painted (PersonaApp._first_frame_painted).
    gc.disable()
    try:
        return _open(path)
    finally:
        gc.enable()


def _open(path: Path) -> int:
    from sessions.validate import SessionError

    if not path.exists() and not path.is_symlink():
        print(
            f"persona-tui: {path} does not exist; create it with 'persona-tui new {path}' "
            "(add --demo to start from the example persona).",
            file=sys.stderr,
        )
        return 2
    from sessions.store import SessionFile

    try:
        session_file = SessionFile.load(path)
    except SessionError as error:
        print(f"persona-tui: {one_sentence(error, path)}", file=sys.stderr)
        return 2
    from persona_tui.app import make_app  # Textual only once the file is known to be good

    app = make_app(session_file)
    app.run()
    # The app saves before it quits; this covers an exit it did not see coming.
    if app.dirty:
        try:
            app.session_file.save()
        except (OSError, ValueError) as error:
            print(f"persona-tui: your last changes to {path} are not saved: {error}", file=sys.stderr)
            return 1
    return app.return_code or 0


def one_sentence(error, path: Path) -> str:
    """The first problem, and where to see the rest."""
    problems = getattr(error, "problems", None) or []
    first = str(problems[0]) if problems else str(error)
    more = len(problems) - 1
    if more <= 0:
        return first
    plural = "s" if more > 1 else ""
    return f"{first.rstrip('.')} (and {more} more problem{plural}: 'persona-tui validate {path}' lists them)."
