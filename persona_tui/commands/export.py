"""`persona-tui export SESSION --run ID`: merge a run's adapter, write GGUFs, verify them.

The export runs as a job in the session's workspace (jobs/<id>/export/), in this process with a
progress bar (`--detach` leaves a worker running instead). At the end the report is printed:
every file with its size and time, and the verification figures of every GGUF. Exit status 0
only when the export is whole and verified.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to GGUF (F16 + quantizations, LoRA GGUF, Modelfiles), verified",
        description="Merge a run's LoRA adapter into its base model, convert it to GGUF with "
        "llama.cpp's converter, quantize it, write the adapter as a LoRA GGUF and an Ollama "
        "Modelfile beside each GGUF, and check every GGUF against the merged model.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    parser.add_argument(
        "--run", dest="run_id", metavar="ID", help="the run to export (its newest finished training job)"
    )
    parser.add_argument(
        "--job", dest="train_job", metavar="JOBID", help="the training job to export (instead of the newest)"
    )
    parser.add_argument("--adapter", metavar="DIR", help="a PEFT adapter folder to export (with --base)")
    parser.add_argument("--base", metavar="MODEL", help="the adapter's base model (default: the run's)")
    parser.add_argument(
        "--quant",
        default="q8_0,q4_k_m",
        metavar="TYPES",
        help="comma-separated quantization types (default q8_0,q4_k_m; '' for none)",
    )
    parser.add_argument("--persona", metavar="ID", help="put this persona in the Modelfiles as SYSTEM")
    parser.add_argument("--no-verify", action="store_true", help="skip the verification (not recommended)")
    parser.add_argument("--no-lora-gguf", action="store_true", help="do not write the adapter as a LoRA GGUF")
    parser.add_argument("--drop-merged", action="store_true", help="delete the merged HF folder at the end")
    parser.add_argument("--detach", action="store_true", help="start a detached worker, print the job id and return")
    return parser


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sessions.store import SessionFile
    from sessions.validate import SessionError
    from supervisor import jobs

    if not (args.run_id or args.train_job or args.adapter):
        return _fail("name what to export: --run ID, --job JOBID, or --adapter DIR --base MODEL.")
    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as e:
        return _fail(str(e))

    from trainers.export.job import create_export_job, format_report, record_export
    from trainers.export.reader import read_report
    from trainers.worker import KINDS

    options = {"verify": not args.no_verify, "adapter_gguf": not args.no_lora_gguf, "keep_merged": not args.drop_merged}
    try:
        job_dir = create_export_job(
            sf.workspace,
            session=sf.path,
            run=args.run_id,
            train_job=args.train_job,
            adapter=args.adapter,
            base_model=args.base,
            quants=args.quant,
            persona=args.persona,
            options=options,
        )
    except ValueError as e:
        return _fail(str(e))

    if args.detach:
        jobs.start_job(job_dir)
        print(job_dir.name)
        print(f"follow it with: persona-tui jobs {args.session} --watch {job_dir.name}", file=sys.stderr)
        return 0

    from persona_tui.job_progress import follow

    console = Console()
    console.print(f"job {job_dir.name}", markup=False, highlight=False)
    watcher = threading.Thread(target=follow, args=(job_dir, "export"), kwargs={"console": console}, daemon=True)
    watcher.start()
    status = jobs.run_job_inline(job_dir, KINDS)
    watcher.join(timeout=10)
    report = read_report(job_dir)
    if report:
        console.print(format_report(report), markup=False, highlight=False, soft_wrap=True)
    if status.state == "finished":
        try:
            if record_export(SessionFile.load(args.session), job_dir):
                print(f"listed under run {args.run_id or report.get('run')} in {args.session}")
        except (SessionError, OSError) as e:  # the export itself stands; say why the listing did not
            print(f"persona-tui: the export is done but could not be listed in {args.session}: {e}", file=sys.stderr)
        print(f"export: {job_dir / 'export'}")
        return 0
    return _fail(f"export {status.state}: {status.error or status.message}", 1)
