"""What a chat is made of, shared by `persona-tui chat` and the Chat pane: engine references,
the engines a session offers, the persona system prompt and the history files. (A reply goes
to annotation through `evaluators.annotation.send_to_annotation`.)

An engine reference is one string a person can type:

    <engine id>                  an engine of the session
    bundled:smollm2-135m-instruct     the bundled GGUF in llama.cpp
    gguf:PATH[+lora:PATH]        a GGUF file, optionally with a LoRA GGUF on top
    hf:MODEL[+adapter:DIR]       transformers, optionally with a PEFT adapter folder
    openai:URL#MODEL             any OpenAI-compatible endpoint (#MODEL optional)
    run:ID                       a run's newest finished adapter on its base model (transformers)
    export:JOBID[:TYPE]          an export's GGUF (TYPE f16, q8_0, ...; default q8_0, else f16);
                                 TYPE "lora" is the base GGUF with the export's LoRA GGUF, "base"
                                 that base GGUF alone; a run id for JOBID means that run's newest
                                 export (the demo's scoring)

`run:` and `export:` are resolved by evaluators.run_models, the one resolver evaluations use too
(its docstring has the whole grammar and the preference order).

Nothing here imports an ML library: the engine is opened by `engines.open_engine`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessions.model import EngineSpec, Persona, Session

CHATS_DIR = "chats"


class EngineRefError(ValueError):
    """An engine reference that names nothing usable; the message says what would do."""


REF_HELP = (
    "an engine id of the session, bundled:NAME, gguf:PATH[+lora:PATH], hf:MODEL[+adapter:DIR], "
    "openai:URL#MODEL, run:ID or export:JOBID[:TYPE]"
)


def _split_plus(body: str, key: str) -> tuple[str, str]:
    marker = f"+{key}:"
    if marker in body:
        main, extra = body.split(marker, 1)
        return main, extra
    return body, ""


def engine_from_ref(ref: str, session: Session | None = None, workspace: Path | None = None) -> EngineSpec:
    """The EngineSpec an engine reference names (see the module docstring)."""
    ref = (ref or "").strip()
    if not ref:
        raise EngineRefError(f"no engine named; give {REF_HELP}.")
    if session is not None and session.engine(ref) is not None:
        return session.engine(ref)
    kind, _, body = ref.partition(":")
    if kind == "bundled":
        return EngineSpec(id=ref, kind="llamacpp", model=ref)
    if kind == "gguf" and body:
        model, lora = _split_plus(body, "lora")
        return EngineSpec(
            id=ref,
            kind="llamacpp",
            model=str(Path(model).expanduser()),
            adapter=str(Path(lora).expanduser()) if lora else "",
        )
    if kind == "hf" and body:
        model, adapter = _split_plus(body, "adapter")
        return EngineSpec(
            id=ref, kind="transformers", model=model, adapter=str(Path(adapter).expanduser()) if adapter else ""
        )
    if kind == "openai" and body:
        url, _, model = body.partition("#")
        return EngineSpec(id=ref, kind="openai", base_url=url, model=model)
    if kind == "run" and body:
        return _run_engine(ref, body, session, workspace)
    if kind == "export" and body:
        return _export_engine(ref, body, workspace)
    if session is not None and session.engines:
        known = ", ".join(e.id for e in session.engines)
        raise EngineRefError(f"engine {ref!r} is not one of the session's engines ({known}) nor {REF_HELP}.")
    raise EngineRefError(f"engine {ref!r} is not {REF_HELP}.")


def _run_engine(ref: str, run_id: str, session: Session | None, workspace: Path | None) -> EngineSpec:
    """`run:ID` by the one preference order (evaluators.run_models), as evaluations score it."""
    if workspace is None:
        raise EngineRefError(f"{ref!r} needs a session to find the run's training jobs in.")
    from evaluators.run_models import run_engine

    try:
        return run_engine(workspace, run_id, ref)
    except ValueError as e:
        raise EngineRefError(str(e)) from None


def _export_engine(ref: str, body: str, workspace: Path | None) -> EngineSpec:
    if workspace is None:
        raise EngineRefError(f"{ref!r} needs a session to find the export job in.")
    from evaluators.run_models import export_engine

    try:
        return export_engine(workspace, body, ref)
    except ValueError as e:
        raise EngineRefError(str(e)) from None


@dataclass(frozen=True)
class EngineChoice:
    ref: str
    label: str


def engine_choices(session: Session, workspace: Path) -> list[EngineChoice]:
    """Every engine the session offers: base models, its engines, runs' adapters, exports."""
    from supervisor import jobs
    from trainers.export.reader import read_report
    from trainers.train.reader import adapter_dir

    out: list[EngineChoice] = []
    seen: set[str] = set()

    def add(ref: str, label: str) -> None:
        if ref not in seen:
            seen.add(ref)
            out.append(EngineChoice(ref, label))

    for run in session.runs:
        if run.base_model.startswith("bundled:"):
            add(run.base_model, f"base {run.base_model.removeprefix('bundled:')} · llama.cpp")
    add("bundled:smollm2-135m-instruct", "base smollm2-135m-instruct · llama.cpp")
    for e in session.engines:
        add(e.id, f"{e.id} · {e.kind}")
    statuses = jobs.list_jobs(workspace) if workspace.is_dir() else []  # one scan for every run below
    from trainers.export.job import find_train_job, resolve_source
    from trainers.train.job import remote_engine

    for run in session.runs:
        remote = remote_engine(workspace, run.id, statuses)
        if remote is not None:
            add(f"run:{run.id}", f"run {run.id} {remote['model']} · openai")
            continue
        if any(s.kind == "train" and s.state == "finished" and adapter_dir(s.dir) for s in statuses):
            try:  # what `run:ID` resolves to (engine_from_ref), without listing the jobs again
                resolve_source({"train_job": find_train_job(workspace, run.id, statuses).name}, workspace)
            except ValueError:
                continue
            add(f"run:{run.id}", f"run {run.id} adapter · transformers")
    for s in reversed(statuses):
        if s.kind != "export" or s.state != "finished":
            continue
        report = read_report(s.dir) or {}
        if not report.get("ok"):
            continue
        who = report.get("run") or s.id
        for f in report.get("files", []):
            # Quant and size in the label; "unverified" when the export was made without the check.
            tail = f"{_size_text(f.get('bytes'))}{'' if f.get('verified') else ' unverified'} · llama.cpp"
            if f["kind"] == "gguf" and f.get("role") != "base":
                add(f"export:{s.id}:{f['type']}", f"export {who} {f['type']} {tail}")
            elif f["kind"] == "lora":
                add(f"export:{s.id}:lora", f"export {who} base+LoRA {tail}")
    return out


def failed_exports(workspace: Path) -> list[tuple[str, str]]:
    """(job id, why) of each export that failed (a failed verification among them): shown, never
    offered as a model to chat with."""
    from supervisor import jobs
    from trainers.export.reader import read_report

    out = []
    for s in jobs.list_jobs(workspace) if workspace.is_dir() else []:
        if s.kind == "export" and s.state in ("failed", "died"):
            report = read_report(s.dir) or {}
            out.append((s.id, str(report.get("error") or s.error or s.state).splitlines()[0]))
    return out


def _size_text(n: Any) -> str:
    """Bytes as a person reads a file size: 145 MB (decimal, as file managers and Ollama show)."""
    if not isinstance(n, (int, float)) or n <= 0:
        return "?"
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def persona_prompt(persona: Persona) -> str:
    from sessions.model import persona_system_prompt

    return persona_system_prompt(persona)


def build_messages(history: list[dict[str, str]], user: str, system: str = "") -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": m["role"], "content": m["content"]} for m in history] + [{"role": "user", "content": user}]


def new_chat_id(prefix: str = "chat") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


class ChatLog:
    """One conversation's history, one JSON object a line in `<workspace>/chats/<id>.jsonl`.

    Appending (never rewriting) means a crash loses at most the line being written.
    """

    def __init__(self, workspace: Path, chat_id: str | None = None) -> None:
        from sessions.workspace import safe_id

        self.id = safe_id(chat_id or new_chat_id(), "chat id")
        self.path = Path(workspace) / CHATS_DIR / f"{self.id}.jsonl"

    def append(self, **record: Any) -> dict[str, Any]:
        record = {"t": time.time(), **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        from sessions.jsonl import read_jsonl

        return read_jsonl(self.path, bad=lambda n, reason: None, errors="replace")  # a history keeps what it can
