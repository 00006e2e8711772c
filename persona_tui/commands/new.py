"""`persona-tui new PATH`: start a session file (an empty persona, or the demo's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "new",
        help="create a session file (one persona to fill in, or --demo)",
        description="Create a new session file. Refuses to overwrite an existing file.",
    )
    parser.add_argument("path", type=Path, metavar="PATH.toml", help="the session file to create")
    parser.add_argument("--demo", action="store_true", help="start from the demo persona instead of an empty one")
    parser.add_argument("--name", default="", help="the session's name (default: the file name)")
    return parser


def starter_session(name: str):
    """One persona with every field empty except what validation requires."""
    from sessions.model import Persona, Session

    return Session(name=name, personas=[Persona(id="my-persona", name="My persona")])


def run(args: argparse.Namespace) -> int:
    from sessions.store import SessionFile
    from sessions.validate import SessionError

    path: Path = args.path
    if path.suffix != ".toml":
        print(f"persona-tui: {path} must end in .toml (its data folder is the name without it).", file=sys.stderr)
        return 2
    if path.exists() or path.is_symlink():
        print(
            f"persona-tui: {path} already exists; open it with 'persona-tui {path}' or choose another name.",
            file=sys.stderr,
        )
        return 2
    if not path.parent.is_dir():
        print(f"persona-tui: the folder {path.parent} does not exist; create it first.", file=sys.stderr)
        return 2
    if args.demo:
        from sessions.demo import demo_session

        session = demo_session()
        if args.name:
            session.name = args.name
    else:
        session = starter_session(args.name or path.stem)
    try:
        SessionFile.create(path, session)
    except (SessionError, OSError) as error:
        print(f"persona-tui: could not create {path}: {error}", file=sys.stderr)
        return 2
    print(f"Created {path}. Open it with: persona-tui {path}")
    return 0
