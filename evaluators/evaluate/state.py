"""What every kind of evaluation shares: the job's state (`Run`: settings, outputs, scores,
progress, problems, opening models and the judge) and reading the records it scores.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.reader import OUTPUTS_FILE, SCORES_FILE, output_id
from evaluators.evaluate.spec import FALLBACK, ModelEntry

if TYPE_CHECKING:
    from sessions.model import Persona
    from supervisor.jobs import JobReporter

# ----------------------------------------------------------------------------- data


def chat_example(record: Mapping[str, Any]) -> tuple[list[dict[str, str]], str] | None:
    """(context messages, reference reply) of a persona_chat or chat_demos record, else None."""
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list) and completion:
        last = completion[-1]
        if isinstance(last, Mapping) and isinstance(last.get("content"), str):
            return [dict(m) for m in prompt], last["content"]
    messages = record.get("messages")
    if isinstance(messages, list):
        idx = max(
            (i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "assistant"), default=-1
        )
        if idx > 0:
            return [dict(m) for m in messages[:idx]], str(messages[idx].get("content") or "")
    return None


def conversation_key(record: Mapping[str, Any], index: int) -> str:
    """Which conversation a record came from, so that hits@1 never draws a distractor from it."""
    meta: Mapping[str, Any] = record["meta"] if isinstance(record.get("meta"), Mapping) else {}
    for key in ("conversation", "conversation_id", "source_row", "row"):
        if meta.get(key) not in (None, ""):
            return f"{key}:{meta[key]}"
    prompt = record.get("prompt") or record.get("messages") or []
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], Mapping) and prompt[0].get("role") == "system":
        return "system:" + str(prompt[0].get("content"))
    return f"record:{index}"


def text_target(record: Mapping[str, Any]) -> tuple[list[dict[str, str]] | str, str] | None:
    """What to score in a record of any shape: (chat messages or raw prompt, continuation)."""
    example = chat_example(record)
    if example is not None:
        return example
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        for key in ("completion", "chosen"):
            if isinstance(record.get(key), str) and record[key].strip():
                return prompt, record[key]
    if isinstance(record.get("text"), str) and record["text"].strip():
        return "", record["text"]
    return None


# ----------------------------------------------------------------------------- the job's state


class Run:
    """What every evaluation kind shares: settings, outputs, scores, progress and problems."""

    def __init__(self, job: JobReporter) -> None:
        self.job = job
        spec = job.spec
        self.settings: dict[str, Any] = dict(spec.get("settings") or {})
        self.models = [ModelEntry.from_plain(m) for m in spec.get("models") or []]
        self.persona: Persona | None = None
        if spec.get("persona"):
            from sessions import codec
            from sessions.model import Persona

            problems: list = []
            self.persona = codec.decode(Persona, spec["persona"], ("persona",), problems)
            if problems:
                job.fail(f"the job's frozen persona is damaged ({problems[0][1]}); create the job again.")
        self.done = 0
        self.total = 0
        self._next = 0
        # Models may be scored in two threads at once (`each_model`, `model_lanes`):
        # the outputs file, the counts and the scores are written under this lock.
        self.lock = threading.RLock()
        self._out = open(job.dir / OUTPUTS_FILE, "w", encoding="utf-8")
        self.scores: dict[str, Any] = {
            "eval": spec.get("eval"),
            "kind": spec.get("eval_kind"),
            "job": job.dir.name,
            "session": spec.get("session"),
            "models": [m.label for m in self.models],
            "settings": self.settings,
            "partial": False,
            "problems": [],
            "notes": [],
            "started": time.time(),
        }

    # -- recording
    def output(self, **row: Any) -> str:
        if self.persona is not None:
            row.setdefault("persona", self.persona.id)
        with self.lock:
            index = self._next
            self._next += 1
            oid = output_id(self.job.dir.name, index)
            self._out.write(json.dumps({"index": index, "output": oid, **row}, default=str) + "\n")
            self._out.flush()
        return oid

    def tick(self, n: int = 1, message: str = "") -> None:
        with self.lock:
            self.done += n
            self.job.progress(self.done, self.total, message)

    def problem(self, message: str) -> None:
        """Something was left out: the result is partial, and says why."""
        with self.lock:
            self.scores["partial"] = True
            self.scores["problems"].append(message)
            self.job.log(f"problem: {message}")
            self.job.event(event="problem", message=message)

    def note(self, message: str) -> None:
        with self.lock:
            self.scores["notes"].append(message)
            self.job.log(message)

    def write_scores(self) -> None:
        from sessions.store import atomic_write

        with self.lock:
            self.scores["updated"] = time.time()
            text = json.dumps(self.scores, indent=1, default=str) + "\n"
            atomic_write(self.job.dir / SCORES_FILE, text, backup=False, fsync=False)

    def stop_if_cancelled(self) -> None:
        if self.job.cancelled:
            self.problem("cancelled before the end; the scores cover what was done.")
            self.write_scores()
            self.job.raise_if_cancelled()

    def close(self) -> None:
        self._out.close()

    # -- models
    def sampling(self) -> dict[str, Any]:
        s = self.settings
        return {"max_tokens": s["max_tokens"], "temperature": s["temperature"], "top_p": s["top_p"]}

    def open(self, entry: ModelEntry) -> Any | None:
        """The model's engine, or None (with the reason recorded) when it cannot be opened."""
        from engines import open_engine

        self.job.log(f"opening {entry.label} ({entry.engine.kind}: {entry.engine.model})")
        try:
            return open_engine(entry.engine)
        except (ValueError, OSError, RuntimeError) as e:
            self.problem(f"model {entry.label!r} could not be opened and is left out: {e}")
            return None

    def open_judge(self) -> Any:
        """The judge (or the fallback scorer) with its prompts, or None when none is set."""
        from evaluators.judge import Judge, load_prompt

        name = self.settings.get("judge", "")
        if not name:
            return None
        if name == FALLBACK:
            from evaluators.fallback import FallbackScorer

            return FallbackScorer()
        from engines import open_engine
        from sessions.model import EngineSpec

        overrides = dict(self.settings.get("prompts") or {})
        if self.settings.get("rubric"):
            overrides["expression"] = self.settings["rubric"]
        prompts = {k: load_prompt(k, v) for k, v in overrides.items()}
        spec = self.job.spec["judge"]
        engine = open_engine(EngineSpec(**spec["engine"]))
        return Judge(
            engine,
            spec["label"],
            prompts,
            max_tokens=int(self.settings.get("judge_max_tokens", 160)),
            seed=int(self.settings.get("seed", 0)),
        )

    def each_model(self, score: Callable[[ModelEntry, threading.Event], None], lanes: int = 1) -> None:
        """`score(entry, stopping)` for every model: one after another, or two at once (`lanes`,
        from `model_lanes`), each in a thread of its own. When a lane fails, `stopping` is set so
        the other stops at its next reply; the first failure, in model order, is the job's.
        Rows that lanes add in turn are put back in model order (`scores["rows"]`)."""
        import os

        from engines.llamacpp import in_lanes

        if lanes <= 1 or len(self.models) < 2:
            stopping = threading.Event()  # never set: one model at a time
            for entry in self.models:
                score(entry, stopping)
                self.stop_if_cancelled()
            return
        self.job.log(f"scoring two models at once, one llama.cpp context each ({os.cpu_count()} cores)")
        try:
            in_lanes(score, self.models, lanes)
        finally:
            order = {m.label: i for i, m in enumerate(self.models)}
            with self.lock:
                rows = self.scores.get("rows")
                if isinstance(rows, list):
                    rows.sort(key=lambda r: order.get(r.get("model"), len(order)))
        self.stop_if_cancelled()

    def system_for(self, entry: ModelEntry) -> str | None:
        from sessions.model import persona_system_prompt

        if self.persona is not None and (entry.persona_prompt or self.settings.get("system") == "persona"):
            return persona_system_prompt(self.persona)
        return None


def model_lanes(models: list[ModelEntry]) -> int:
    """How many models an evaluation scores at once (`engines.llamacpp.cpu_lanes`): two llama.cpp
    contexts on a CPU build with two cores or more, else one."""
    from engines.llamacpp import cpu_lanes

    return cpu_lanes([m.engine for m in models])


def close_engine(engine: Any) -> None:
    if engine is not None and hasattr(engine, "close"):
        engine.close()


def cannot_score(e: Exception) -> bool:
    """An engine that cannot score text at all (an endpoint without logprobs, no chat template)."""
    from engines import EngineUnsupported
    from evaluators.probes import NoChatTemplate

    return isinstance(e, (EngineUnsupported, NoChatTemplate))
