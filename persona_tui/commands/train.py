"""`persona-tui train SESSION --run ID`: train one of the session's runs as a job.

In the foreground the run trains in this process with a progress bar (step, loss, tokens/s,
ETA); Ctrl-C cancels it once the current step is done, after saving a checkpoint. `--detach`
starts a detached worker instead and prints the job id (follow it with `persona-tui jobs
SESSION --watch ID`). `--resume JOB` continues a cancelled, failed or died job from its last
checkpoint. At the end the loss curve is drawn as a small text chart (raw points under a
smoothed line) and the loss summarised as window means (`trainers.train.loss_curve`), with the
events file the numbers come from.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a run of the session (LoRA) as a job; --detach to leave it running",
        description="Validate a run spec of the session, then train it as a job whose events, "
        "checkpoints and adapter live in the session's workspace (jobs/<id>/). The session file "
        "is not changed.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    parser.add_argument("--run", dest="run_id", metavar="ID", help="the run spec to train")
    parser.add_argument("--resume", metavar="JOB", help="continue a stopped training job from its last checkpoint")
    parser.add_argument("--detach", action="store_true", help="start a detached worker, print the job id and return")
    parser.add_argument(
        "--skip-memory-check",
        action="store_true",
        help="start even when the memory estimate says the run will not fit the device",
    )
    return parser


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def _summary(console: Any, job_dir: Path, status: Any) -> None:
    from supervisor import jobs
    from trainers.train.loss_curve import loss_chart_text
    from trainers.train.reader import read_run

    run = read_run(job_dir)
    train, evals, end = run.train, run.evals, run.end
    chart = loss_chart_text(train, evals)
    if chart:
        console.print(chart, markup=False, highlight=False)
    if end:
        parts = [f"step {end.get('step')}"]
        if train or evals:  # window means, not two single noisy steps (trainers/train/loss_curve.py)
            parts.append(run.loss().text(digits=4))
        if end.get("s_per_step"):
            parts.append(f"{end['s_per_step']:.2f} s/step")
        if end.get("tokens_per_s"):
            parts.append(f"{end['tokens_per_s']:.0f} tokens/s")
        if end.get("peak_mb"):
            parts.append(f"peak RSS {end['peak_mb'] / 1024:.2f} GiB")
        if end.get("gpu_peak_mb"):
            parts.append(f"peak GPU {end['gpu_peak_mb'] / 1024:.2f} GiB")
        console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)
    if train or evals:
        console.print(f"loss from: {job_dir / jobs.EVENTS_FILE}", markup=False, highlight=False, soft_wrap=True)
    result = run.result
    if result and result.get("adapter"):
        console.print(f"adapter: {result['adapter']}", markup=False, highlight=False, soft_wrap=True)
    if result and result.get("engine", {}).get("kind") == "openai":
        console.print(
            f"fine-tuned model: {result['engine'].get('model')}", markup=False, highlight=False, soft_wrap=True
        )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sessions.store import SessionFile
    from sessions.validate import SessionError
    from supervisor import jobs

    console = Console()
    if not args.run_id and not args.resume:
        return _fail("name the run to train with --run ID (or a job to continue with --resume JOB).")
    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as e:
        return _fail(str(e))

    from trainers.train.job import RunSpecError, create_train_job
    from trainers.worker import KINDS

    if args.resume:
        try:
            job_dir = jobs.jobs_root(sf.workspace) / jobs.check_job_id(args.resume)
            status = jobs.read_status(job_dir)
        except ValueError as e:
            return _fail(str(e))
        if status.kind != "train":
            return _fail(f"job {args.resume!r} is a {status.kind or 'unknown'} job, not a training job.")
        try:
            jobs.requeue_job(job_dir)
        except ValueError as e:
            return _fail(str(e))
        (job_dir / "cancel.request").unlink(missing_ok=True)
        label = f"resume {args.resume}"
    else:
        run_spec = sf.session.run(args.run_id)
        if run_spec is not None:
            from trainers.train.memory_estimate import check_run

            verdict = check_run(run_spec)
            if verdict and verdict[0] == "error" and not args.skip_memory_check:
                return _fail(f"run {args.run_id!r}: {verdict[1][:-1]} (or pass --skip-memory-check).")
            if verdict:
                print(f"persona-tui: warning: run {args.run_id!r}: {verdict[1]}", file=sys.stderr)
        try:
            job_dir = create_train_job(sf, args.run_id)
        except RunSpecError as e:
            for p in e.problems:
                print(f"persona-tui: {p}", file=sys.stderr)
            return 2
        except ValueError as e:
            return _fail(str(e))
        label = f"train {args.run_id}"

    if args.detach:
        jobs.start_job(job_dir)
        print(job_dir.name)
        print(f"follow it with: persona-tui jobs {args.session} --watch {job_dir.name}", file=sys.stderr)
        return 0

    from persona_tui.job_progress import follow

    console.print(f"job {job_dir.name}", markup=False, highlight=False)
    watcher = threading.Thread(target=follow, args=(job_dir, label), kwargs={"console": console}, daemon=True)
    watcher.start()
    status = jobs.run_job_inline(job_dir, KINDS)
    watcher.join(timeout=10)
    _summary(console, job_dir, status)
    if status.state == "finished":
        from trainers.train.job import record_remote_engine

        try:
            engine_id = record_remote_engine(SessionFile.load(args.session), job_dir)
        except (SessionError, OSError) as e:
            print(
                f"persona-tui: the run finished but its model could not be added to {args.session}: {e}",
                file=sys.stderr,
            )
            return 1
        if engine_id:
            console.print(
                f"engine {engine_id!r} added to {args.session}: chat with it via --engine {engine_id}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        return 0
    if status.state == "cancelled":
        print(
            f"{job_dir.name} cancelled; continue it with: persona-tui train {args.session} --resume {job_dir.name}",
            file=sys.stderr,
        )
        return 1
    return _fail(f"{label} {status.state}: {status.error or status.message}", 1)
