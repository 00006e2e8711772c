"""`persona-tui data SESSION --dataset ID`: build one of the session's dataset specs, headless.

`persona-tui data pull spc|tailoring|persona-inference` downloads a study's public data from the
Hub into the Hugging Face cache (a job, like `persona-tui models pull`).

The build runs as a job of kind "dataset" (the same files any viewer follows): in the foreground
with a progress bar, or with `--detach` as a detached worker whose id is printed. Then the
statistics are printed. `--list` lists the session's dataset specs and what is built.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="build a dataset spec of the session (a job with a progress bar); --list lists them",
        description="Build one of the session's dataset specs into its workspace "
        "(datasets/<id>.jsonl, .heldout.jsonl, .stats.json) as a job, then print its statistics. "
        "The session file is not changed (except by --mix, which adds the mixed spec).",
    )
    parser.add_argument(
        "session",
        type=Path,
        metavar="SESSION.toml|pull",
        help="the session file; or 'pull' to download a study's public data",
    )
    parser.add_argument(
        "pull_what",
        nargs="?",
        metavar="spc|tailoring|persona-inference",
        help="with pull: which Hub dataset to fetch into the Hugging Face cache (as a job)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--dataset", metavar="ID", help="the dataset spec to build")
    what.add_argument("--list", action="store_true", help="list the dataset specs and their built state")
    what.add_argument("--stats", metavar="ID", help="print the statistics of a built dataset")
    what.add_argument(
        "--mix",
        nargs=2,
        metavar=("NEW_ID", "A,B[,C]"),
        help="add a dataset spec that is the union of built datasets A, B, ... (saved in the session), then build it",
    )
    parser.add_argument(
        "--detach", action="store_true", help="start the build as a detached job, print its id and return"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse an import (persona_chat, tailoring) with any broken row instead of "
        "skipping it; the first broken row is named by line",
    )
    parser.add_argument(
        "--export", metavar="FORMAT", help="after building, export as openai, sharegpt, alpaca, trl_preference or hf"
    )
    return parser


MAX_BROKEN_SHOWN = 20


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def stats_table(stats: dict[str, Any]):
    """The statistics a person wants first, as a rich table."""
    from rich.table import Table

    table = Table("statistic", "value", title=f"dataset {stats.get('dataset', '')}", title_justify="left")
    nd = stats.get("near_duplicates") or {}
    tok = stats.get("tokens") or {}
    rows = [
        ("format", f"{stats.get('format')} ({stats.get('generator')})"),
        ("examples", f"{stats.get('count')} ({stats.get('train')} train, {stats.get('heldout')} held out)"),
        ("requested", stats.get("requested")),
        ("near-duplicates removed", stats.get("near_duplicates_removed")),
        ("exact duplicates removed", stats.get("exact_duplicates_removed")),
        ("malformed (skipped)", stats.get("malformed")),
        ("broken rows (skipped)", stats.get("skipped")),
        (
            "near-duplicate pairs left",
            f"{nd.get('pairs', '-')} ({nd.get('pair_fraction', 0):.4%} of pairs, "
            f"{nd.get('example_fraction', 0):.1%} of examples; "
            f"Jaccard >= {nd.get('threshold', 0.8)})"
            if nd
            else "-",
        ),
        ("distinct-2", stats.get("distinct_2")),
        ("distinct-2 of targets", stats.get("distinct_2_target")),
        (
            "tokens (mean / p95 / max)",
            f"{tok.get('mean')} / {tok.get('p95')} / {tok.get('max')} under {tok.get('base_model')}"
            if "mean" in tok
            else tok.get("error", "-"),
        ),
        ("examples/s", stats.get("examples_per_s")),
    ]
    gen = stats.get("generation") or {}
    if "probe_leaks_rejected" in gen:  # the template generator's candidates that held a probe
        rows.append(("evaluation probes refused", gen["probe_leaks_rejected"]))
    if "teacher_tokens_per_s" in gen:
        rows.append(
            (
                "teacher",
                f"{gen.get('teacher')}: {gen.get('teacher_calls')} calls, {gen.get('teacher_tokens_per_s')} tokens/s",
            )
        )
    if "teacher_prompt_tokens" in gen:  # the llm generator's pipeline
        cost = gen.get("cost")
        rows += [
            (
                "teacher tokens",
                f"{gen['teacher_prompt_tokens']} prompt + {gen.get('teacher_output_tokens')} generated"
                + (f", cost {cost:.4f}" if cost is not None else ", cost not priced"),
            ),
            (
                "teacher time",
                f"{gen.get('teacher_wall_seconds')} s wall, {gen.get('concurrency')} in flight, "
                f"{gen.get('teacher_retries')} retries, {gen.get('teacher_waited_seconds')} s waited",
            ),
            (
                "replies",
                f"{gen.get('structured')} constrained; resumed {gen.get('resumed_replies')}; rejected "
                + (", ".join(f"{k} {v}" for k, v in sorted((gen.get("rejected") or {}).items())) or "none"),
            ),
        ]
        for example in (gen.get("malformed_examples") or [])[:3]:
            rows.append(("malformed, e.g.", example))
    if stats.get("shortfall"):
        rows.append(("note", stats["shortfall"]))
    for key, value in rows:
        table.add_row(key, "-" if value is None else str(value))
    return table


def _pull(args: argparse.Namespace) -> int:
    """`persona-tui data pull spc|tailoring|persona-inference`: a Hub dataset into the HF cache, as a job."""
    from engines.hub import STUDY_DATASETS
    from persona_tui.commands.models import pull_job

    if args.pull_what not in STUDY_DATASETS:
        return _fail(f"name the data to pull: persona-tui data pull {'|'.join(STUDY_DATASETS)}.")
    return pull_job(STUDY_DATASETS[args.pull_what], "dataset", None, None, args.detach)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    if str(args.session) == "pull" and not args.session.is_file():
        return _pull(args)
    if args.pull_what:
        return _fail(f"unexpected {args.pull_what!r}; name what to do with --dataset, --list, --stats or --mix.")
    if not (args.dataset or args.list or args.stats or args.mix):
        return _fail(
            "name what to do: --dataset ID (build), --list, --stats ID or --mix NEW_ID A,B; "
            "or 'persona-tui data pull spc|tailoring|persona-inference'."
        )

    from sessions.store import SessionFile
    from sessions.validate import SessionError
    from supervisor import jobs
    from trainers.data import reader as data_reader

    console = Console()
    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as e:
        return _fail(str(e))
    session, workspace = sf.session, sf.workspace

    if args.list:
        from rich.table import Table

        if not session.datasets:
            print(f"{args.session} has no dataset specs yet; add one in the Data pane.")
            return 0
        table = Table("id", "format", "generator", "persona / source", "size", "built")
        for d in session.datasets:
            st = data_reader.read_stats(workspace, d.id) if data_reader.is_built(workspace, d.id) else None
            built = f"{st['count']} examples" if st else ("yes" if data_reader.is_built(workspace, d.id) else "no")
            table.add_row(
                d.id,
                d.format if not d.mix else f"mix of {', '.join(d.mix)}",
                d.generator,
                d.persona or d.source,
                str(d.size),
                built,
            )
        console.print(table)
        return 0

    if args.stats:
        st = data_reader.read_stats(workspace, args.stats)
        if st is None:
            return _fail(f"dataset {args.stats!r} has no statistics in {workspace}; build it first.")
        console.print(stats_table(st))
        return 0

    from trainers.data.build import DatasetError, check_spec, mix_spec
    from trainers.data.job import job_spec
    from trainers.worker import KINDS

    if args.mix:
        new_id, parts = args.mix[0], args.mix[1].split(",")
        try:
            mixed = mix_spec(session, new_id, parts, workspace)  # every part built before it is saved
        except ValueError as e:
            return _fail(str(e))
        session.datasets.append(mixed)
        try:
            sf.save()
        except (SessionError, OSError) as e:
            return _fail(f"could not save {args.session}: {e}")
        print(f"added dataset {new_id!r} to {args.session}: a mix of {', '.join(mixed.mix)}")
        args.dataset = new_id
    spec = session.dataset(args.dataset)
    if spec is None:
        known = ", ".join(d.id for d in session.datasets) or "none"
        return _fail(f"{args.session} has no dataset {args.dataset!r} (it has: {known}).")
    try:
        check_spec(session, spec, workspace)
        if args.export:
            from trainers.data.export import EXPORT_FORMATS

            if args.export not in EXPORT_FORMATS:
                raise DatasetError(f"Export format {args.export!r} is unknown; use one of {', '.join(EXPORT_FORMATS)}.")
        job_dir = jobs.create_job(
            workspace, "dataset", {**job_spec(sf.path, spec.id), **({"strict": True} if args.strict else {})}
        )
    except ValueError as e:
        return _fail(str(e))

    if args.detach:
        jobs.start_job(job_dir)
        print(job_dir.name)
        print(f"follow it with: persona-tui jobs {args.session} --watch {job_dir.name}", file=sys.stderr)
        return 0

    from persona_tui.job_progress import follow

    watcher = threading.Thread(
        target=follow, args=(job_dir, f"dataset {spec.id}"), kwargs={"console": console}, daemon=True
    )
    watcher.start()
    status = jobs.run_job_inline(job_dir, KINDS)
    watcher.join(timeout=10)
    if status.state != "finished":
        return _fail(f"building {spec.id!r} {status.state}: {status.error or status.message}", 1)
    st = data_reader.read_stats(workspace, spec.id)
    if st:
        console.print(stats_table(st))
        broken = (st.get("generation") or {}).get("broken") or []
        for row in broken[:MAX_BROKEN_SHOWN]:
            print(f"skipped line {row['line']}: {row['reason']}", file=sys.stderr)
        if len(broken) > MAX_BROKEN_SHOWN:
            print(
                f"... and {len(broken) - MAX_BROKEN_SHOWN} more broken rows (all in "
                f"{data_reader.stats_path(workspace, spec.id)}).",
                file=sys.stderr,
            )
    if args.export:
        from trainers.data.export import export_dataset

        try:
            out = export_dataset(workspace, spec.id, args.export)
        except ValueError as e:
            return _fail(str(e))
        print(f"exported {spec.id} as {args.export} to {out}")
    return 0
