"""`persona-tui`: open a session in the workbench, or run one of the commands headless.

Each command is a module in `persona_tui.commands` with `add_parser(subparsers)` and
`run(args) -> int`; add one by naming it in COMMANDS. Nothing heavy is imported here: `--help`
and opening the app must stay fast, so commands import what they need inside `run`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# Order is the order of `--help`.
COMMANDS = [
    "open",
    "new",
    "validate",
    "persona",
    "demo",
    "eval",
    "experiment",
    "jobs",
    "data",
    "models",
    "train",
    "annotate",
    "export",
    "chat",
    "serve",
]

# `persona-tui SESSION.toml` is short for `persona-tui open SESSION.toml`.
DEFAULT_COMMAND = "open"


class _VersionAction(argparse.Action):
    """--version, reading the installed distribution's version only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("persona-tui")
        except PackageNotFoundError:
            text = "unknown (not installed)"
        print(f"persona-tui {text}")
        parser.exit()


class _CommandListFormatter(argparse.HelpFormatter):
    """Leaves room for the longest command name, so each command's help starts on its line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=20)
        self._action_max_length = 16


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `only` one command's: running a command imports its module
    alone, so `persona-tui SESSION.toml` does not pay for every other command's imports."""
    parser = argparse.ArgumentParser(
        prog="persona-tui",
        formatter_class=_CommandListFormatter,
        description="A terminal workbench for persona injection: write personas, build "
        "training sets, train LoRA runs, export GGUF, chat, evaluate and annotate.",
        epilog="Run 'persona-tui SESSION.toml' to open a session (short for 'persona-tui open "
        "SESSION.toml'); 'persona-tui COMMAND --help' tells more about a command.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS if only is None else [only]:
        module = importlib.import_module(f"persona_tui.commands.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        argv.insert(0, DEFAULT_COMMAND)
    parser = build_parser(only=argv[0] if argv and argv[0] in COMMANDS else None)
    if not argv:
        parser.print_usage(sys.stderr)
        print(
            "persona-tui: name a session to open (persona-tui SESSION.toml), create one with "
            "'persona-tui new SESSION.toml', or try 'persona-tui demo'.",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `| head` has read enough; say nothing more into the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError) as error:  # every user error of the project is a ValueError
        print(f"persona-tui: {user_message(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: one sentence for the person, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"persona-tui: internal error ({type(error).__name__}: {error}); this is a bug: rerun with "
            f"{DEBUG_ENV}=1 for the traceback and report it.",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE


DEBUG_ENV = "PERSONA_TUI_DEBUG"

# What to do about the operating system's refusals a person can fix.
_OS_FIXES = {
    errno.ENOSPC: "free some space on that disk and run the command again",
    errno.EDQUOT: "free some space under your quota and run the command again",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.ENOENT: "check the path",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.ECONNREFUSED: "is the server running?",
}


def user_message(error: BaseException) -> str:
    """One sentence for a command's error: the project's own messages as they are, an OSError
    as what failed, on which file, and what to do about it."""
    if isinstance(error, OSError) and error.strerror:
        where = f" on {error.filename}" if error.filename else ""
        fix = _OS_FIXES.get(error.errno or 0)
        return f"{error.strerror}{where}" + (f"; {fix}." if fix else ".")
    return str(error).strip() or type(error).__name__  # several lines only where each is a problem (--strict)


if __name__ == "__main__":
    sys.exit(main())
