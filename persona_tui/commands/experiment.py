"""`persona-tui experiment SESSION`: a prior study redone in one command, resumable.

    persona-tui experiment my.toml --persona odile                 # the format comparison
    persona-tui experiment my.toml --persona odile --quick         # the same, CPU-sized
    persona-tui experiment my.toml --study persona-chat [--quick]  # SPC fine-tune vs prompt-only
    persona-tui experiment my.toml --study tailoring [--quick]     # SFT/DPO with vs without personas
    persona-tui experiment my.toml --persona odile --generator llm --teacher gpt   # data by a teacher

Every step (dataset, training, export, evaluation) runs as a job and is recorded in
`<workspace>/experiments/<id>/state.json`: rerun the same command after a crash, a Ctrl-C or a
closed terminal and it follows the jobs still running, resumes stopped training from its last
checkpoint, and never redoes a finished step. The defaults are the studies' own sizes, meant for
a GPU box; `--quick` picks sizes that finish on a laptop CPU in minutes (see each study's QUICK).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "experiment",
        help="redo a prior study (format comparison, persona-chat, tailoring) in one resumable command",
        description="Build the data, train the runs, evaluate them and print the study's table and "
        "chart; each finished step is recorded and never redone, so rerunning resumes.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    parser.add_argument(
        "--study",
        choices=("format-comparison", "persona-chat", "tailoring"),
        default="format-comparison",
        help="which study (default: format-comparison)",
    )
    parser.add_argument(
        "--persona",
        action="append",
        metavar="ID",
        help="format comparison: the persona (repeat for several; default: the session's only one)",
    )
    parser.add_argument(
        "--size", type=int, metavar="N", help="examples per training set (format comparison: per format, default 500)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="optimizer steps per run (default: the run spec's own, one epoch unless set)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="format comparison: replies per expression probe; persona-chat and tailoring: test examples scored",
    )
    parser.add_argument(
        "--judge",
        metavar="ENGINE",
        help="engine id of the session (or a model) that judges; default: the bundled model, "
        "beside the transparent fallback (markers + MiniLM similarity), labelled as such; "
        "'fallback' uses the fallback alone (no LLM judge at all)",
    )
    parser.add_argument(
        "--generator",
        choices=("template", "llm"),
        help="format comparison: who writes the three training sets (default: template, offline); "
        "llm: the teacher engine named with --teacher (see [datasets.llm] in docs/datasets.md)",
    )
    parser.add_argument(
        "--teacher",
        metavar="ENGINE",
        help="with --generator llm: the session's engine id that writes the data (default: the "
        "session's first engine, else the bundled model)",
    )
    parser.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="format comparison: export each run (GGUF F16 verified against the merged "
        "model, plus q8_0 and q4_k_m; F16 only with --quick); default on, --no-export skips it",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CPU-sized: few examples, few steps, few samples (minutes, not hours)"
    )
    parser.add_argument(
        "--id",
        dest="exp_id",
        metavar="ID",
        help="the experiment's id (default: <persona>-fc, spc, tailoring); a new id starts anew",
    )
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help="persona-chat and tailoring: the folder holding the study's data files"
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="run each job in this process instead of a detached worker (Ctrl-C stops it)",
    )
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"persona-tui: {message}", file=sys.stderr)
    return code


def _generator_problem(args: argparse.Namespace, sf) -> str | None:
    """Why --generator/--teacher cannot be used as given (one sentence), or None."""
    if args.generator is None and args.teacher is None:
        return None
    if args.study != "format-comparison":
        return f"--generator and --teacher apply to the format comparison; the {args.study} study imports its data."
    if args.teacher is not None and args.generator != "llm":
        return "--teacher names the engine of the llm generator; add --generator llm."
    if args.teacher is not None and sf.session.engine(args.teacher) is None:
        known = ", ".join(e.id for e in sf.session.engines) or "none"
        return (
            f"--teacher {args.teacher!r} is not an engine of {sf.path} (it has: {known}); add an [[engines]] "
            "entry for the teacher (kind openai with base_url and model for an endpoint) or name one of those."
        )
    return None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from persona_tui.job_progress import follow
    from sessions.store import SessionFile
    from sessions.validate import SessionError

    console = Console()
    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as error:
        return _fail(str(error))

    def follow_job(job_dir, label, console):
        return follow(job_dir, label, console=console)

    common = {"console": console, "follow": follow_job, "foreground": args.foreground}
    problem = _generator_problem(args, sf)
    if problem:
        return _fail(problem)
    try:
        if args.study == "format-comparison":
            from evaluators.experiments import format_comparison as fc

            personas = args.persona or ([sf.session.personas[0].id] if len(sf.session.personas) == 1 else [])
            if not personas:
                known = ", ".join(p.id for p in sf.session.personas) or "none"
                return _fail(
                    f"{sf.path} has {len(sf.session.personas)} personas ({known}); name one with --persona ID."
                )
            export = args.export
            for persona in personas:
                cfg = fc.preset(
                    persona,
                    args.quick,
                    sf.workspace,
                    size=args.size,
                    steps=args.steps,
                    samples=args.samples,
                    judge=args.judge,
                    export=export,
                    generator=args.generator,
                    teacher=args.teacher,
                    exp_id=(args.exp_id if len(personas) == 1 else None),
                )
                fc.run(sf, cfg, **common)
        elif args.study == "persona-chat":
            from evaluators.experiments import persona_chat as pc

            cfg = pc.preset(
                args.quick,
                sf.workspace,
                size=args.size,
                steps=args.steps,
                samples=args.samples,
                exp_id=args.exp_id,
                data=str(args.data) if args.data else None,
            )
            pc.run(sf, cfg, **common)
        else:
            from evaluators.experiments import tailoring as tl

            cfg = tl.preset(
                args.quick,
                sf.workspace,
                size=args.size,
                steps=args.steps,
                samples=args.samples,
                judge=args.judge,
                exp_id=args.exp_id,
                data=str(args.data) if args.data else None,
            )
            tl.run(sf, cfg, **common)
    except KeyboardInterrupt:
        print("\nstopped; the jobs already started go on. Rerun the same command to resume.", file=sys.stderr)
        return 130
    except ValueError as error:  # ExperimentError, SessionError, EvalSpecError, RunSpecError: one sentence each
        problems = getattr(error, "problems", None)
        for line in [str(p) for p in problems] if problems else [str(error)]:
            print(f"persona-tui: {line}", file=sys.stderr)
        return 2
    return 0
