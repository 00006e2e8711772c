"""`persona-tui serve SESSION --export JOBID`: llama-cpp-python's OpenAI-compatible server for an
export's GGUF (or any GGUF), on 127.0.0.1 unless told otherwise, as a *service job*.

The server runs inside a service job (`supervisor.jobs.run_service`): `starting`, then `ready` with
its URL, then `stopped` when cancelled or idle for `--idle-timeout` seconds; `persona-tui jobs`
lists it with its URL. In the foreground this command prints the base URL at once, then `ready`
when the server answers, then waits; Ctrl-C (or SIGTERM) stops it. `--detach` leaves a worker
running (it outlives the shell and the app) and returns once the server answers. The chat
template is the GGUF's own, so replies are formatted the way the run was trained.

An API key is never written anywhere: `--api-key-env NAME` names the environment variable that
holds it; the worker reads it and hands it to the server through the server's own environment.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_IDLE_TIMEOUT_S = 1800


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve an export's GGUF through llama-cpp-python's OpenAI-compatible server (a service job)",
        description="Start `python -m llama_cpp.server` for an export (or a GGUF file) as a service job "
        "and print its base URL; any OpenAI client can then talk to it. `persona-tui jobs SESSION` lists it; "
        "`--cancel ID` stops it.",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--export", metavar="JOBID", help="an export job of the session")
    what.add_argument("--gguf", metavar="PATH", help="a GGUF file (or bundled:NAME)")
    parser.add_argument(
        "--quant",
        default="",
        metavar="TYPE",
        help="which of the export's GGUFs: f16, q8_0, ... or lora (default q8_0, else f16)",
    )
    parser.add_argument("--lora-gguf", metavar="PATH", help="a LoRA GGUF to apply on top of --gguf")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default 8000; 0 picks a free one)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context length (default 2048)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument(
        "--alias", default="", help="the model id clients name (default: the export's run id or file name)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"stop after this long without a request (default {DEFAULT_IDLE_TIMEOUT_S}; 0: never)",
    )
    parser.add_argument(
        "--api-key-env",
        default="",
        metavar="NAME",
        help="require the API key held in this environment variable (it is never written down)",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="leave the server running as a detached service job; return once it answers",
    )
    return parser


class ServeError(ValueError):
    """What to serve cannot be served; the message is one sentence with the fix."""


@dataclass
class ServePlan:
    """A queued service job and what a person needs to use it."""

    job_dir: Path
    url: str
    alias: str
    model: str
    adapter: str
    api_key_env: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def create_serve_job(
    session: Any,
    workspace: Path,
    *,
    export: str = "",
    quant: str = "",
    gguf: str = "",
    lora_gguf: str = "",
    host: str = "127.0.0.1",
    port: int = 0,
    n_ctx: int = 2048,
    threads: int = 0,
    alias: str = "",
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    api_key_env: str = "",
) -> ServePlan:
    """A queued service job serving an export's GGUF (or a GGUF file); the CLI and the Chat pane
    both start serving through this. Raises ServeError with one sentence."""
    from engines.llamacpp import gpu_layers
    from persona_tui.conversation import EngineRefError, engine_from_ref
    from supervisor import jobs

    try:
        if export:
            spec = engine_from_ref(f"export:{export}" + (f":{quant}" if quant else ""), session, workspace)
            alias = alias or f"{export}-{Path(spec.model).stem}"
        else:
            from engines.models import resolve_model

            model = resolve_model(gguf)
            if model.kind != "gguf":
                raise ServeError(f"{gguf} is not a GGUF file; serve needs a GGUF (export the model first).")
            spec = engine_from_ref(f"gguf:{model.path}" + (f"+lora:{lora_gguf}" if lora_gguf else ""))
            alias = alias or model.path.stem
    except (EngineRefError, ValueError) as e:
        raise ServeError(str(e)) from None
    if spec.adapter and not Path(spec.adapter).is_file():
        raise ServeError(f"the LoRA GGUF {spec.adapter} does not exist.")
    if api_key_env and not os.environ.get(api_key_env):
        raise ServeError(
            f"the environment variable {api_key_env} is empty or not set; "
            f"export {api_key_env}=<your key> first (the key is never written down)."
        )
    if idle_timeout_s < 0:
        raise ServeError(f"--idle-timeout is {idle_timeout_s:g}; give 0 (never) or a number of seconds.")
    if port and _port_taken(host, port):
        raise ServeError(f"port {port} on {host} is in use; choose another with --port (0 picks a free one).")
    port = port or _free_port(host)
    threads = threads or os.cpu_count() or 1
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        spec.model,
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_gpu_layers",
        str(gpu_layers()),
    ]
    if spec.adapter:
        command += ["--lora_path", spec.adapter]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/v1"
    service = {
        "command": command,
        "url": url,
        "idle_timeout_s": idle_timeout_s,
        "api_key_env": api_key_env,
        "api_key_to": "API_KEY" if api_key_env else "",
    }
    what = {
        "model": spec.model,
        "adapter": spec.adapter or "",
        "alias": alias,
        "export": export,
        "quant": quant,
        "host": host,
        "port": port,
    }
    try:
        job_dir = jobs.create_service_job(workspace, service, {"serve": what})
    except (jobs.JobError, OSError) as e:
        raise ServeError(str(e)) from None
    return ServePlan(job_dir, url, alias, spec.model, spec.adapter or "", api_key_env)


def usage_text(url: str, alias: str, api_key_env: str = "") -> str:
    """An `openai` snippet and the `ssh -L` line for reaching a loopback server from elsewhere."""
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    key = f'os.environ["{api_key_env}"]' if api_key_env else '"sk-no-key"'
    user = os.environ.get("USER", "user")
    return "\n".join(
        [
            "from openai import OpenAI" + ("; import os" if api_key_env else ""),
            f'client = OpenAI(base_url="{url}", api_key={key})',
            f'reply = client.chat.completions.create(model="{alias}", messages=[{{"role": "user", "content": "Hello!"}}])',
            "print(reply.choices[0].message.content)",
            "",
            f"from another machine: ssh -L {port}:127.0.0.1:{port} {user}@{socket.gethostname()}",
        ]
    )


def _fail(msg: str, code: int = 2) -> int:
    print(f"persona-tui: {msg}", file=sys.stderr)
    return code


def wait_until_ready(job_dir: Path, timeout: float = 180.0, interval: float = 0.25) -> Any:
    """The service's status once it is ready or ended (or the timeout passed)."""
    from supervisor import jobs

    deadline = time.monotonic() + timeout
    while True:
        status = jobs.read_status(job_dir)
        if status.state == "ready" or status.terminal or time.monotonic() > deadline:
            return status
        time.sleep(interval)


def run(args: argparse.Namespace) -> int:
    from sessions.store import SessionFile
    from sessions.validate import SessionError
    from supervisor import jobs

    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as e:
        return _fail(str(e))
    try:
        plan = create_serve_job(
            sf.session,
            Path(sf.workspace),
            export=args.export or "",
            quant=args.quant,
            gguf=args.gguf or "",
            lora_gguf=args.lora_gguf or "",
            host=args.host,
            port=args.port,
            n_ctx=args.n_ctx,
            threads=args.threads,
            alias=args.alias,
            idle_timeout_s=args.idle_timeout,
            api_key_env=args.api_key_env,
        )
    except ServeError as e:
        return _fail(str(e))
    print(
        f"serving {plan.model}" + (f" + {plan.adapter}" if plan.adapter else "") + f" as model {plan.alias!r}",
        flush=True,
    )
    print(plan.url, flush=True)
    print(f"service job {plan.job_dir.name}; the server's log: {plan.job_dir / jobs.SERVER_LOG}", flush=True)

    def announce(status: Any) -> int:
        if status.state == "ready":
            print("ready", flush=True)
            print(usage_text(plan.url, plan.alias, plan.api_key_env), flush=True)
            return 0
        if status.state in ("failed", "died"):
            return _fail(status.error or f"the service {status.state}.")
        return _fail(
            f"the server did not answer at {plan.url} in time; its output is in {plan.job_dir / jobs.SERVER_LOG}.", 1
        )

    if args.detach:
        jobs.start_job(plan.job_dir)
        code = announce(wait_until_ready(plan.job_dir))
        if code == 0:
            print(f"stop it with: persona-tui jobs {args.session} --cancel {plan.job_dir.name}", flush=True)
        return code

    def watch_for_ready() -> None:
        status = wait_until_ready(plan.job_dir, timeout=float("inf"))
        if status.state == "ready":
            announce(status)

    threading.Thread(target=watch_for_ready, name="serve-ready", daemon=True).start()
    try:
        status = jobs.run_job_inline(plan.job_dir, {jobs.SERVICE_KIND: jobs.run_service})
    except KeyboardInterrupt:  # a second Ctrl-C: the service's finally has stopped the server
        return 0
    if status.state == "failed":
        return _fail(status.error)
    return 0
