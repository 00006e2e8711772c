"""`persona-tui serve SESSION --export JOBID`: llama-cpp-python's OpenAI-compatible server for an
export's GGUF (or any GGUF), on 127.0.0.1 unless told otherwise.

Prints the base URL at once, then `ready` when the server answers, then waits; Ctrl-C (or
SIGTERM) stops the server. The chat template is the GGUF's own, so replies are formatted the way
the run was trained.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve an export's GGUF through llama-cpp-python's OpenAI-compatible server",
        description="Start `python -m llama_cpp.server` for an export (or a GGUF file) and print "
        "its base URL; any OpenAI client can then talk to it.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--export", metavar="JOBID", help="an export job of the session")
    what.add_argument("--gguf", metavar="PATH", help="a GGUF file (or bundled:NAME)")
    parser.add_argument("--quant", default="", metavar="TYPE",
                        help="which of the export's GGUFs: f16, q8_0, ... or lora (default q8_0, else f16)")
    parser.add_argument("--lora-gguf", metavar="PATH", help="a LoRA GGUF to apply on top of --gguf")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default 8000; 0 picks a free one)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context length (default 2048)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument("--alias", default="", help="the model id clients name (default: the export's run id or file name)")
    return parser


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _last_line(path: Path) -> str:
    """The server's last words (its exception's message when it failed to start)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no output"
    return next((line for line in reversed(lines) if line), "no output").rstrip(".")


def run(args: argparse.Namespace) -> int:
    import os

    from persona_tui.conversation import EngineRefError, engine_from_ref
    from sessions.store import SessionFile
    from sessions.validate import SessionError

    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as e:
        return _fail(str(e))
    try:
        if args.export:
            ref = f"export:{args.export}" + (f":{args.quant}" if args.quant else "")
            spec = engine_from_ref(ref, sf.session, sf.workspace)
            alias = args.alias or f"{args.export}-{Path(spec.model).stem}"
        else:
            from engines.models import resolve_model

            model = resolve_model(args.gguf)
            if model.kind != "gguf":
                return _fail(f"{args.gguf} is not a GGUF file; serve needs a GGUF (export the model first).")
            spec = engine_from_ref(f"gguf:{model.path}" + (f"+lora:{args.lora_gguf}" if args.lora_gguf else ""))
            alias = args.alias or model.path.stem
    except (EngineRefError, ValueError) as e:
        return _fail(str(e))
    if spec.adapter and not Path(spec.adapter).is_file():
        return _fail(f"the LoRA GGUF {spec.adapter} does not exist.")
    port = args.port or _free_port(args.host)
    threads = args.threads or os.cpu_count() or 1
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", spec.model, "--model_alias", alias,
        "--host", args.host, "--port", str(port), "--n_ctx", str(args.n_ctx),
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
    ]
    if spec.adapter:
        cmd += ["--lora_path", spec.adapter]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}/v1"
    print(f"serving {spec.model}" + (f" + {spec.adapter}" if spec.adapter else "") + f" as model {alias!r}", flush=True)
    print(url, flush=True)
    # The server's own output goes to a log: a model it cannot load ends in its traceback, which
    # a person should not have to read; they get one sentence and the log's path.
    log_path = Path(sf.workspace) / "serve" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"the server's log: {log_path}", flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not _answers(url):
            if time.monotonic() > deadline:
                proc.terminate()
                return _fail(f"the server did not answer at {url} within 120 s.", 1)
            time.sleep(0.25)
        if proc.poll() is not None:
            return _fail(f"the server exited with code {proc.returncode} before answering ({_last_line(log_path)}); "
                         f"its output is in {log_path}.")
        print("ready", flush=True)
        return 0 if proc.wait() == 0 else 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
