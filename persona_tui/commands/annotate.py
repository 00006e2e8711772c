"""`persona-tui annotate SESSION`: label outputs in the Annotate tab, list the queue, or export labels.

persona-tui annotate my.toml --annotator alice [--blind]   # the workbench, on the Annotate tab
persona-tui annotate my.toml --queue                       # what is waiting, one line each
persona-tui annotate my.toml --export labels.jsonl         # every label as JSON Lines
persona-tui annotate my.toml --agreement                   # judge vs people (kappa), metrics vs people (rho)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "annotate",
        help="label outputs by hand, list the annotation queue, or export labels as JSONL",
        description="Open the workbench on the Annotate tab to label outputs of evaluations and "
        "chat (each label is saved the moment it is given), or, with --queue or --export, "
        "list the queue or write the labels without opening it.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    parser.add_argument(
        "--annotator",
        metavar="NAME",
        default=None,
        help="who is labelling (default: $PERSONA_TUI_ANNOTATOR, else your user "
        "name); with --export or --queue, only this person's labels",
    )
    parser.add_argument(
        "--blind",
        action="store_true",
        help="start in blind mode: the model is hidden and the order shuffled per annotator",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--queue", action="store_true", help="list the outputs waiting to be labelled and exit")
    what.add_argument(
        "--export",
        type=Path,
        metavar="LABELS.jsonl",
        default=None,
        help="write the labels as JSON Lines (one per output and annotator) and exit",
    )
    what.add_argument(
        "--agreement",
        action="store_true",
        help="print how far the machine labels agree with people's (Cohen's kappa per "
        "trait, with the confusion table) and each metric with people's consistency "
        "ratings (Spearman's rho), and exit",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from sessions.store import SessionFile
    from sessions.validate import SessionError

    path: Path = args.session
    if not path.exists():
        print(f"persona-tui: {path} does not exist; create it with 'persona-tui new {path}'.", file=sys.stderr)
        return 2
    try:
        session_file = SessionFile.load(path)
    except SessionError as error:
        print(
            f"persona-tui: {str(error).rstrip('.')}. Run 'persona-tui validate {path}' to list every problem.",
            file=sys.stderr,
        )
        return 2
    if args.queue:
        try:
            return _print_queue(session_file, args.annotator, args.blind)
        except BrokenPipeError:  # `| head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    if args.export is not None:
        return _export(session_file, args.export, args.annotator)
    if args.agreement:
        return _agreement(session_file, args.annotator)
    return _open(session_file, args.annotator, args.blind)


def _print_queue(session_file, annotator: str | None, blind: bool) -> int:
    from evaluators import annotation as core

    queue = core.build_queue(session_file.session, session_file.workspace)
    for problem in queue.problems:
        print(f"persona-tui: {problem}", file=sys.stderr)
    who = core.default_annotator(annotator)
    labelling = core.Labelling(session_file.session, who)
    items = queue.ordered(who, blind)
    if not items:
        print(
            f"Nothing to label: no eval job in {session_file.workspace / 'jobs'} has replies, and "
            f"no chat reply was sent to annotation ({session_file.workspace / core.CHAT_QUEUE_FILE})."
        )
        return 0
    annotations = session_file.session.annotations
    for n, item in enumerate(items, 1):
        others = sorted({a.annotator for a in annotations if a.output == item.key and core.has_labels(a)})
        mark = "✓" if labelling.is_labelled(item.key) else " "
        shown = item.describe(blind)
        who_else = f" [labelled by {', '.join(others)}]" if others else ""
        fields = "  ".join(f"{k}={v}" for k, v in shown.items())
        prompt = " ".join(item.prompt.split())
        print(f"{mark} {n:>4}  {fields}{who_else}\n        {prompt[:100]}")
    labelled, total = labelling.progress(i.key for i in items)
    print(f"{labelled} / {total} labelled by {who}.")
    return 0


def _export(session_file, path: Path, annotator: str | None) -> int:
    from evaluators import annotation as core

    queue = core.build_queue(session_file.session, session_file.workspace)
    try:
        n = core.export_jsonl(session_file.session, path, queue, annotator)
    except ValueError as error:
        print(f"persona-tui: {error}", file=sys.stderr)
        return 2
    whose = f" by {annotator}" if annotator else ""
    print(f"Wrote {n} label{'' if n == 1 else 's'}{whose} to {path}.")
    return 0


def _agreement(session_file, annotator: str | None) -> int:
    from rich.console import Console

    from evaluators.agreement import agreement_report
    from evaluators.tables import agreement_tables

    annotations = [a for a in session_file.session.annotations if not annotator or a.annotator == annotator]
    report = agreement_report(annotations, session_file.workspace)
    console = Console()
    for problem in report["problems"]:
        console.print(f"[yellow]![/] {problem}")
    for table in agreement_tables(report):
        console.print(table)
    return 0


def make_annotate_app(session_file, annotator: str | None = None, blind: bool = False):
    """The workbench on `session_file`, opened on the Annotate tab for `annotator`."""
    from persona_tui.app import PersonaApp

    class AnnotateApp(PersonaApp):
        async def on_mount(self) -> None:  # runs after PersonaApp's own on_mount
            (await self.pane("annotate")).configure(annotator=annotator, blind=blind)

    # The Annotate pane is the one composed first and given the keyboard (PersonaApp.initial_tab).
    return AnnotateApp(session_file, initial_tab="annotate")


def _open(session_file, annotator: str | None, blind: bool) -> int:
    app = make_annotate_app(session_file, annotator, blind)
    app.run()
    if app.dirty:  # the app saves before it quits; this covers an exit it did not see coming
        try:
            app.session_file.save()
        except (OSError, ValueError) as error:
            print(f"persona-tui: your last changes to {session_file.path} are not saved: {error}", file=sys.stderr)
            return 1
    return app.return_code or 0
