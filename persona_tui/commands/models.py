"""`persona-tui models [SESSION.toml]`: what a run can start from; `models pull REPO_ID`: fetch one.

    persona-tui models                         # bundled, Hub models in the HF cache
    persona-tui models my.toml                 # + the GGUF files / HF folders the session names, its exports
    persona-tui models pull Qwen/Qwen3-0.6B [--revision R] [--detach]

A pull runs as a job (kind hub_pull) with a progress bar: only the files a model needs, into the
normal Hugging Face cache, resumable (run the same command again after a kill or Ctrl-C: finished
files are kept). A gated repo needs HF_TOKEN or `hf auth login`; the workbench stores no token.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the base models a run can use; 'models pull REPO_ID' downloads one from the Hub (a job)",
        description="List the models a run can start from: the bundled model, Hub models already in the "
        "Hugging Face cache (revision, size on disk), the GGUF files and HF folders a session names, and "
        "the exports of its runs. 'persona-tui models pull REPO_ID [--revision R]' downloads a model's "
        "config, tokenizer and safetensors into the HF cache as a job.",
    )
    parser.add_argument(
        "target", nargs="?", metavar="SESSION.toml|pull", help="a session file (to list its models too), or 'pull'"
    )
    parser.add_argument("repo_id", nargs="?", metavar="REPO_ID", help="with pull: the Hub repo (owner/name)")
    parser.add_argument("--revision", metavar="R", help="with pull: a branch, tag or commit (default main)")
    parser.add_argument(
        "--session",
        type=Path,
        metavar="SESSION.toml",
        help="with pull: keep the job in this session's workspace (its Jobs list shows it)",
    )
    parser.add_argument(
        "--detach", action="store_true", help="with pull: start the download as a detached job, print its id and return"
    )
    return parser


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    if args.target == "pull":
        return _pull(args)
    if args.repo_id or args.revision or args.detach:
        return _fail("REPO_ID, --revision and --detach go with 'persona-tui models pull REPO_ID'.")
    from rich.console import Console
    from rich.table import Table

    from trainers.hub_job import available_models

    session = None
    if args.target:
        from sessions.store import SessionFile
        from sessions.validate import SessionError

        try:
            session = SessionFile.load(Path(args.target)).session
        except (SessionError, OSError) as e:
            return _fail(str(e))
    table = Table(title="models a run can use", title_justify="left")
    table.add_column("model", overflow="fold")  # folded, never cut: it is what a run's base_model names
    table.add_column("kind")
    table.add_column("revision / path", overflow="fold")
    table.add_column("size", no_wrap=True)
    table.add_column("state", overflow="fold")
    for m in available_models(session):
        table.add_row(m.name, m.kind, m.detail, size_text(m.size), "ready" if m.usable else m.note or "not usable")
    Console().print(table, soft_wrap=True)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from engines.hub import REPO_ID

    if not args.repo_id:
        return _fail("name the model to download: persona-tui models pull OWNER/NAME [--revision R].")
    if not REPO_ID.match(args.repo_id):
        return _fail(f"{args.repo_id!r} is not a Hub repo id; write it as owner/name, e.g. Qwen/Qwen3-0.6B.")
    workspace = None
    if args.session:
        from sessions.workspace import workspace_for

        if not args.session.is_file():
            return _fail(f"{args.session} is not a session file.")
        workspace = workspace_for(args.session)
    return pull_job(
        args.repo_id,
        "model",
        args.revision,
        workspace,
        args.detach,
        watch_hint=f"persona-tui jobs {args.session}" if args.session else "",
    )


def pull_job(repo_id: str, repo_type: str, revision: str | None, workspace, detach: bool, watch_hint: str = "") -> int:
    """Create a pull job and run it in the foreground with a progress bar (or detach it).
    Shared by `models pull` and `data pull`."""
    from rich.console import Console

    from supervisor import jobs
    from trainers.hub_job import create_pull_job, run_inline

    console = Console()
    try:
        job_dir = create_pull_job(repo_id, repo_type, revision, workspace)
    except (ValueError, OSError) as e:
        return _fail(str(e))
    if detach:
        jobs.start_job(job_dir)
        print(job_dir.name)
        hint = f"{watch_hint} --watch {job_dir.name}" if watch_hint else f"its files are in {job_dir}"
        print(f"follow it with: {hint}" if watch_hint else hint, file=sys.stderr)
        return 0

    from persona_tui.job_progress import follow

    console.print(f"job {job_dir.name}", markup=False, highlight=False)
    watcher = threading.Thread(
        target=follow, args=(job_dir, f"pull {repo_id}"), kwargs={"console": console}, daemon=True
    )
    watcher.start()
    status = run_inline(job_dir)
    watcher.join(timeout=10)
    if status.state == "finished":
        events, _ = jobs.read_events(job_dir)
        done = next((e for e in reversed(events) if e.get("event") == "pulled"), {})
        console.print(f"{repo_id} is ready: {done.get('path', '')}", markup=False, highlight=False, soft_wrap=True)
        return 0
    if status.state == "cancelled":
        print(f"{repo_id}: stopped; run the same command again to resume (finished files are kept).", file=sys.stderr)
        return 1
    return _fail(status.error or status.message or f"the pull {status.state}", 1)
