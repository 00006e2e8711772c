"""The teacher generator: an engine writes the persona formats' examples, as a pipeline.

    teacher = Teacher(engine, label, seed, settings=teacher_settings(spec.id, spec.extra))
    result = generate("chat_demos", persona, teacher, size, seed, options, engine_kind="openai",
                      cache=ReplyCache(job_dir / CACHE_FILE, fingerprint(...), earlier_caches(...)))

- **Planned.** Example `i` is fully determined by `(seed, format, i)`: the prompt pack of the
  format (`trainers/banks/teacher_<format>.toml`, or the user's copy) fills its instruction with
  the persona sheet, the trait whose turn it is (traits take turns) and one entry of each of
  the pack's lists (topics, situations, shapes), drawn with a generator seeded by `i`.
- **Concurrent and deterministic.** Up to `concurrency` requests are in flight; replies are
  keyed by their index and filtered strictly in index order, whatever order they arrive in, so
  the same seed and teacher give the same dataset at any concurrency. Retries honour
  Retry-After on 429/5xx; `requests_per_minute` spaces the starts.
- **Structured.** The request carries the pack's JSON schema where the engine can constrain
  output (an endpoint's `response_format`, llama.cpp's grammar); every reply is parsed strictly
  (one JSON object of the schema, nothing around it but whitespace or one code fence) and the
  rest is counted as malformed, with examples of why.
- **Filtered.** A kept example passes: meta-talk ("as an AI", "here is the example"), leaks of
  the persona's evaluation probes, exact duplicates, token near-duplicates (Jaccard) and
  embedding near-duplicates (MiniLM cosine).
- **Resumable.** Each reply is appended to `teacher.jsonl` in the job folder the moment it
  arrives; a later build of the same spec (same fingerprint) finds those files and reuses them,
  so a build killed at 300 of 500 keeps its 300 and asks only for the rest.
- **Counted.** Tokens (the server's usage, else the engine's tokenizer), wall time, request time
  and cost from the user's prices land in the statistics and in each progress message.

Only a teacher that cannot be used at all (unreachable, refused key, unknown model, a schema
it rejects, nothing usable in every try) stops a build, in one sentence naming the engine and
the fix; what was received so far stays in the job folder for the next build.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sessions.model import Persona
from trainers.data.formats import record_text, target_text
from trainers.data.generate.llm_settings import TeacherSettings
from trainers.data.quality import NearDuplicateIndex, ProbeLeakFilter, tokens

MAX_CONSECUTIVE_FAILURES = 5
CACHE_FILE = "teacher.jsonl"
MALFORMED_EXAMPLES = 8
REQUIRED_FIELDS = {
    "chat_demos": ("user", "assistant"),
    "first_person": ("text",),
    "synthetic_docs": ("title", "lead", "sections"),
}

_META_TALK = re.compile(
    r"\b(as an ai|an ai (language )?model|a language model|as a (helpful )?assistant|i am an ai|i'm an ai|"
    r"here (is|are|'s) (the|an|a|your|some) (example|exchange|text|document|reply|response|json|entry|story)|"
    r"this (example|exchange|json)|training data|the character sheet|role-?play|"
    r"i (cannot|can't|am unable to|won't) (help|assist|comply|write)|i'm sorry, but|"
    r"sure[,!] here|certainly[,!] here|\{name\}|\[your name\]|<the user|<the text|<.{0,12}reply>)",
    re.IGNORECASE,
)


class TeacherError(ValueError):
    """The teacher engine cannot be used; one sentence naming the engine and the fix."""


# ----------------------------------------------------------------------------- prompt packs


@dataclass(frozen=True)
class PromptPack:
    fmt: str
    path: str
    system: str
    instruction: str
    lists: dict[str, list[str]]
    schema: dict[str, Any]
    max_tokens: int
    digest: str


class PromptPackError(ValueError):
    """A prompt pack cannot be used; the message names the file and the fix."""


PACK_PLACEHOLDERS = frozenset({"name", "persona", "trait"})


def load_pack(fmt: str, override: str | Path | None = None) -> PromptPack:
    """The format's prompt pack: the user's file, else the shipped `banks/teacher_<fmt>.toml`."""
    if fmt not in REQUIRED_FIELDS:
        raise PromptPackError(
            f"the llm generator has no prompt pack for {fmt!r}; it writes {', '.join(REQUIRED_FIELDS)}."
        )
    if override:
        path = Path(override).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise PromptPackError(
                f"the prompt pack {path} cannot be read ({e.strerror or e}); fix prompt_pack "
                "in [datasets.llm] or remove it to use the shipped pack."
            ) from None
        where = str(path)
    else:
        raw = resources.files("trainers").joinpath("banks", f"teacher_{fmt}.toml").read_bytes()
        where = f"trainers/banks/teacher_{fmt}.toml"
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PromptPackError(f"the prompt pack {where} is not valid TOML ({e}); fix the file.") from None
    for key in ("system", "instruction"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise PromptPackError(f'the prompt pack {where} needs {key} = "..." (text); add it.')
    lists = data.get("lists", {})
    if not isinstance(lists, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in lists.values()
    ):
        raise PromptPackError(f"the prompt pack {where} needs [lists] of non-empty lists of text; fix [lists].")
    allowed = PACK_PLACEHOLDERS | set(lists)
    for key in ("system", "instruction"):
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(data[key]) if f is not None}
        except ValueError as e:
            raise PromptPackError(
                f"the prompt pack {where} has a broken placeholder in {key} ({e}); write literal "
                "braces as {{ and }}."
            ) from None
        unknown = sorted(used - allowed)
        if unknown:
            raise PromptPackError(
                f"the prompt pack {where} uses {{{unknown[0]}}} in {key}, which is neither {{name}}, {{persona}}, "
                f"{{trait}} nor a list of [lists]; add the list or fix the name."
            )
    schema = data.get("schema")
    if not isinstance(schema, dict):
        schema = {}  # then every required field is missing: refused just below
    props = schema.get("properties", {})
    missing = [f for f in REQUIRED_FIELDS[fmt] if f not in props or f not in schema.get("required", [])]
    if missing:
        raise PromptPackError(
            f"the prompt pack {where} has no required property {missing[0]!r} in [schema]; {fmt} needs "
            + ", ".join(REQUIRED_FIELDS[fmt])
            + "."
        )
    max_tokens = data.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or max_tokens < 16:
        raise PromptPackError(
            f"the prompt pack {where} has max_tokens = {max_tokens!r}; use a whole number of 16 or more."
        )
    return PromptPack(
        fmt,
        where,
        data["system"],
        data["instruction"],
        {k: list(v) for k, v in lists.items()},
        schema,
        max_tokens,
        hashlib.sha256(raw).hexdigest()[:16],
    )


def persona_sheet(persona: Persona) -> str:
    """The persona as the teacher reads it: every field the user wrote, labelled."""
    parts = [f"Name: {persona.name.strip() or persona.id}"]
    if persona.summary.strip():
        parts.append(f"Summary: {persona.summary.strip()}")
    if persona.traits:
        parts.append("Traits:\n" + "\n".join(f"- {t.text.strip()}" for t in persona.traits if t.text.strip()))
    if persona.facts:
        parts.append("Facts:\n" + "\n".join(f"- {f.strip()}" for f in persona.facts if f.strip()))
    if persona.style.strip():
        parts.append(f"Speaking style: {persona.style.strip()}")
    if persona.examples:
        parts.append(
            "Lines they might say:\n" + "\n".join(f'- "{e.strip()}"' for e in persona.examples[:6] if e.strip())
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class Planned:
    """Example `index`: its messages and what it was drawn from."""

    index: int
    messages: list[dict[str, str]]
    meta: dict[str, Any]


def plan(pack: PromptPack, persona: Persona, seed: int, index: int) -> Planned:
    """The prompt of example `index`: a pure function of its arguments (resume and order rely on it)."""
    rng = random.Random(f"{seed}:{pack.fmt}:llm:{index}")
    traits = persona.traits
    trait = traits[index % len(traits)] if traits else None
    drawn = {k: rng.choice(v) for k, v in sorted(pack.lists.items())}
    values = {
        "name": persona.name.strip() or persona.id,
        "persona": persona_sheet(persona),
        "trait": trait.text.strip() if trait else persona.summary.strip(),
        **drawn,
    }
    messages = [
        {"role": "system", "content": pack.system.format(**values).strip()},
        {"role": "user", "content": pack.instruction.format(**values).strip()},
    ]
    return Planned(index, messages, {"traits": [trait.id] if trait else [], **drawn})


# ----------------------------------------------------------------------------- the teacher


@dataclass
class TeacherStats:
    calls: int = 0  # requests answered or failed for good (retries not counted)
    failed_calls: int = 0
    retries: int = 0
    seconds: float = 0.0  # summed time inside successful requests
    output_tokens: int = 0
    prompt_tokens: int = 0
    output_chars: int = 0
    waited_s: float = 0.0  # time spent waiting on Retry-After, backoff and the rate limit
    errors: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class RateLimiter:
    """At most `per_minute` starts a minute, spaced evenly; shared by every worker thread."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)
        return delay


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Teacher:
    """An engine as the teacher: requests with retries, a rate limit and thread-safe counts.

    `request(...)` is what the pipeline calls from its worker threads; calling the object with
    `(messages, max_tokens)` is the plain one-reply form persona inference uses.
    """

    def __init__(
        self,
        engine: Any,
        label: str,
        seed: int,
        temperature: float = 0.8,
        top_p: float = 0.95,
        count_tokens: Callable[[str], int] | None = None,
        settings: TeacherSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.label = label
        self.seed = seed
        self.settings = settings or TeacherSettings(temperature=temperature, top_p=top_p)
        self.temperature = self.settings.temperature
        self.top_p = self.settings.top_p
        self.stats = TeacherStats()
        self.limiter = RateLimiter(self.settings.requests_per_minute)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._consecutive = 0
        self._succeeded = False
        tok = getattr(engine, "tokenize", None)
        self._count = count_tokens or (lambda s: len(tok(s)) if tok and s else len(s.split()))

    @property
    def can_constrain(self) -> bool:
        return callable(getattr(self.engine, "chat_reply", None))

    def _tokens(self, text: str) -> int:
        try:
            return self._count(text)
        except Exception:  # noqa: BLE001 - counting is a statistic, never a failure
            return len(text.split())

    def _once(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        seed: int,
        schema: dict[str, Any] | None,
        response_format: str,
    ) -> Reply:
        sampling = {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "seed": seed}
        t0 = time.perf_counter()
        if self.can_constrain:
            fmt = {"response_format": response_format} if schema is not None else {}
            out = self.engine.chat_reply(messages, schema=schema, **fmt, **sampling)
            text = out.get("text") or ""
            reply = Reply(
                text,
                out.get("finish_reason"),
                out.get("prompt_tokens") or 0,
                out.get("completion_tokens") or 0,
                time.perf_counter() - t0,
            )
        else:
            text = self.engine.chat(messages, **sampling)
            text = text if isinstance(text, str) else ""
            reply = Reply(text, None, 0, 0, time.perf_counter() - t0)
        if not reply.completion_tokens:
            reply.completion_tokens = self._tokens(text)
        if not reply.prompt_tokens:
            reply.prompt_tokens = self._tokens("\n".join(m["content"] for m in messages))
        return reply

    def request(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        seed: int,
        schema: dict[str, Any] | None = None,
        response_format: str = "json_schema",
    ) -> Reply | None:
        """One reply, retried on 429/5xx/dropped connections; None when it failed for good.

        Raises TeacherError when the teacher cannot be used at all: an error that retrying cannot
        fix (refused key, unknown model, rejected request, nothing listening) before any success,
        or MAX_CONSECUTIVE_FAILURES failed requests in a row.
        """
        s = self.settings
        attempt = 0
        while True:
            waited = self.limiter.wait()
            try:
                reply = self._once(messages, max_tokens, seed, schema, response_format)
            except Exception as e:  # noqa: BLE001 - every engine failure is judged here
                retryable = bool(getattr(e, "retryable", False))
                if retryable and attempt < s.max_retries:
                    after = getattr(e, "retry_after", None)
                    delay = min(after if after is not None else 0.5 * 2**attempt, s.retry_max_wait)
                    with self._lock:
                        self.stats.retries += 1
                        self.stats.waited_s += waited + delay
                    attempt += 1
                    self._sleep(delay)
                    continue
                self._failed(e, schema is not None, retryable)
                return None
            with self._lock:
                self.stats.calls += 1
                self.stats.seconds += reply.seconds
                self.stats.output_tokens += reply.completion_tokens
                self.stats.prompt_tokens += reply.prompt_tokens
                self.stats.output_chars += len(reply.text)
                self.stats.waited_s += waited
                self._consecutive = 0
                self._succeeded = True
            return reply

    def _failed(self, e: BaseException, with_schema: bool, retryable: bool) -> None:
        msg = _first_line(e)
        status = getattr(e, "status", None)
        with self._lock:
            self.stats.calls += 1
            self.stats.failed_calls += 1
            self.stats.errors.append(msg)
            self._consecutive += 1
            fatal = (
                (not retryable and not self._succeeded)
                or self._consecutive >= MAX_CONSECUTIVE_FAILURES
                or status in (401, 403, 404)
                or (with_schema and getattr(e, "rejected", False))
            )
        if not fatal:
            return
        if with_schema and (status in (400, 415, 422) or getattr(e, "rejected", False)):
            raise TeacherError(
                f"Teacher engine {self.label} rejected the request with the JSON schema ({msg.rstrip('.')}); set "
                'structured = "llama_schema" (llama-cpp-python\'s server), "json_object" or "off" in the dataset\'s '
                "[datasets.llm] table (replies are still parsed strictly) and build again."
            ) from e
        if isinstance(e, ValueError):  # an EngineError: already one sentence with its fix
            raise TeacherError(f"Teacher engine {self.label}: {msg}") from e
        raise TeacherError(
            f"Teacher engine {self.label} failed ({msg.rstrip('.')}); check its settings and that it is "
            "reachable, then build again."
        ) from e

    def __call__(self, messages: list[dict[str, str]], max_tokens: int = 160) -> str:
        """A plain reply (no schema) or "" when the request failed; TeacherError as in `request`."""
        with self._lock:
            n = self.stats.calls
        reply = self.request(messages, max_tokens, self.seed + n + 1)
        return reply.text if reply else ""


# ----------------------------------------------------------------------------- parsing


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


def parse_reply(text: str, finish_reason: str | None, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The reply as an object of the schema, or (None, why not). Strict: one JSON object, nothing else."""
    body = (text or "").strip()
    if not body:
        return None, "empty reply"
    m = _FENCE.match(body)
    if m:
        body = m.group(1).strip()
    try:
        obj = json.loads(body, strict=False)  # a raw newline inside a string is still that string
    except json.JSONDecodeError as e:
        if finish_reason == "length":
            return None, "cut off at max_tokens before the JSON ended"
        return None, f"not JSON ({e.msg} at character {e.pos})"
    problem = schema_problem(obj, schema, "reply")
    return (None, problem) if problem else (obj, "")


def schema_problem(value: Any, schema: dict[str, Any], where: str) -> str | None:
    """Why `value` does not match the (small) schema subset the packs use, or None."""
    if "enum" in schema:
        return None if value in schema["enum"] else f"{where} is {value!r}, not one of {schema['enum']}"
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return f"{where} is not a JSON object"
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                return f"{where} has no {key!r}"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{where} has an unexpected key {extra[0]!r}"
        for key, sub in props.items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return f"{where} is not a list"
        if len(value) < schema.get("minItems", 0):
            return f"{where} has {len(value)} items, fewer than {schema['minItems']}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} has {len(value)} items, more than {schema['maxItems']}"
        for i, item in enumerate(value):
            problem = schema_problem(item, schema.get("items", {}), f"{where}[{i}]")
            if problem:
                return problem
        return None
    if kind == "string":
        if not isinstance(value, str):
            return f"{where} is not text"
        if not value.strip():
            return f"{where} is empty"
        return None
    return None


def _clean(text: str) -> str:
    return re.sub(r"[ \t]+", " ", str(text).replace("\r", "")).strip()


def to_record(
    fmt: str, obj: dict[str, Any], meta: dict[str, Any], options: dict[str, Any], persona: Persona
) -> dict[str, Any]:
    """The format's record from a parsed reply."""
    meta = {**meta, "generator": "llm"}
    if fmt == "chat_demos":
        system = None
        if options.get("persona_in_system_prompt"):
            system = f"You are {persona.name.strip() or persona.id}. {persona.summary.strip()}".strip()
        elif str(options.get("system_prompt", "") or "").strip():
            system = str(options["system_prompt"]).strip()
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": _clean(obj["user"])},
            {"role": "assistant", "content": _clean(obj["assistant"])},
        ]
        return {"messages": messages, "meta": {**meta, "turns": 1}}
    if fmt == "first_person":
        return {"text": _clean(obj["text"]), "meta": meta}
    parts = [f"# {_clean(obj['title'])}", _clean(obj["lead"])]
    for section in obj["sections"]:
        parts += [f"## {_clean(section['heading'])}", _clean(section["body"])]
    return {"text": "\n\n".join(parts), "meta": meta}


# ----------------------------------------------------------------------------- filters


def meta_talk(text: str) -> str | None:
    """The phrase that shows the teacher talking about the task instead of doing it, or None."""
    m = _META_TALK.search(text)
    return m.group(0) if m else None


class EmbeddingFilter:
    """Refuses an example whose MiniLM embedding is within `threshold` cosine of one kept."""

    def __init__(self, threshold: float, embedder: Any = None) -> None:
        self.threshold = threshold
        self.embedder = embedder
        self.rows: list[Any] = []
        self.error = ""

    def check(self, text: str) -> float | None:
        """The highest similarity to a kept example when it is too close (refused), else None (kept)."""
        if self.threshold <= 0 or self.error:
            return None
        try:
            if self.embedder is None:
                from engines.embeddings import shared_embedder

                self.embedder = shared_embedder()
            import torch

            # One sentence at a time: a second intra-op thread only spins against the request threads
            # (measured 10x slower on a loaded 2-core machine).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                row = self.embedder.embed([text])[0]
            finally:
                torch.set_num_threads(threads)
        except Exception as e:  # noqa: BLE001 - a missing model turns the filter off, said in the stats
            self.error = _first_line(e)
            return None
        if self.rows:
            sims = torch.stack(self.rows) @ row
            best = float(sims.max())
            if best >= self.threshold:
                return best
        self.rows.append(row)
        return None


# ----------------------------------------------------------------------------- resume


def fingerprint(
    fmt: str,
    persona: Persona,
    seed: int,
    teacher: str,
    pack: PromptPack,
    settings: TeacherSettings,
    options: dict[str, Any],
    structured: str,
) -> str:
    """What must match for a recorded reply to be reused: the prompt and how it was asked."""
    import dataclasses

    key = json.dumps(
        {
            "format": fmt,
            "persona": dataclasses.asdict(persona),
            "seed": seed,
            "teacher": teacher,
            "pack": pack.digest,
            "structured": structured,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens or pack.max_tokens,
            "options": options,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


class ReplyCache:
    """Replies by index, appended to `<job dir>/teacher.jsonl` as they arrive.

    `replies` holds what earlier builds recorded (read once, when the cache opens). The first line
    of a file names the fingerprint; earlier jobs' files with the same fingerprint (`search`
    folders) are read when the cache opens, so a rerun reuses what a killed build received.
    A half-written last line (the process killed mid-write) is skipped.
    """

    def __init__(self, path: Path | None, fp: str, search: list[Path] | None = None) -> None:
        self.path = path
        self.fp = fp
        self.replies: dict[int, dict[str, Any]] = {}
        self.reused_from: list[str] = []
        for other in search or []:
            if path is not None and other.resolve() == path.resolve():
                continue
            got = self._read(other)
            if got:
                self.reused_from.append(str(other.parent.name))
                for i, r in got.items():
                    self.replies.setdefault(i, r)
        if path is not None:
            for i, r in self._read(path).items():
                self.replies.setdefault(i, r)
        self.reused = len(self.replies)
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not path.exists() or path.stat().st_size == 0
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the build
            if fresh:
                self._write({"fingerprint": fp})
                for i in sorted(self.replies):  # the job folder holds every reply it used
                    self._write(self.replies[i])

    def _read(self, path: Path) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        try:
            with open(path, encoding="utf-8") as f:
                first = f.readline()
                try:
                    if json.loads(first).get("fingerprint") != self.fp:
                        return {}
                except (json.JSONDecodeError, AttributeError):
                    return {}
                for line in f:
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill
                    if isinstance(obj, dict) and isinstance(obj.get("i"), int) and isinstance(obj.get("text"), str):
                        out[obj["i"]] = obj
        except OSError:
            return {}
        return out

    def _write(self, obj: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._file.flush()

    def add(self, index: int, reply: Reply) -> dict[str, Any]:
        obj = {
            "i": index,
            "text": reply.text,
            "finish_reason": reply.finish_reason,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "seconds": round(reply.seconds, 4),
        }
        with self._lock:  # written down, not added to `replies`: those are what earlier builds left
            if self._file is not None:
                self._write(obj)
        return obj

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def earlier_caches(jobs_root: Path | None, current: Path | None) -> list[Path]:
    """Every `teacher.jsonl` under the workspace's jobs folder but the current job's, oldest first."""
    if jobs_root is None or not jobs_root.is_dir():
        return []
    found = [p for p in jobs_root.glob(f"*/{CACHE_FILE}") if current is None or p != current]
    return sorted(found, key=lambda p: p.stat().st_mtime)


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class LlmResult:
    records: list[dict[str, Any]]
    attempts: int
    malformed: int
    exact_duplicates: int
    near_duplicates: int
    teacher: TeacherStats
    rejected: dict[str, int] = field(default_factory=dict)
    malformed_examples: list[str] = field(default_factory=list)
    resumed: int = 0
    wall_seconds: float = 0.0
    structured: str = "off"
    concurrency: int = 1
    pack: str = ""
    embedding_filter: str = ""

    def stats(self, settings: TeacherSettings, label: str) -> dict[str, Any]:
        """The generator's part of the dataset statistics."""
        t = self.teacher
        cost = (t.prompt_tokens * settings.price_input_per_1k + t.output_tokens * settings.price_output_per_1k) / 1000
        return {
            "attempts": self.attempts,
            "malformed": self.malformed,
            "malformed_examples": self.malformed_examples,
            "exact_duplicates_rejected": self.exact_duplicates,
            "near_duplicates_rejected": self.near_duplicates,
            "rejected": dict(self.rejected),
            "resumed_replies": self.resumed,
            "teacher": label,
            "prompt_pack": self.pack,
            "structured": self.structured,
            "concurrency": self.concurrency,
            "requests_per_minute": settings.requests_per_minute,
            "teacher_calls": t.calls,
            "teacher_failed_calls": t.failed_calls,
            "teacher_retries": t.retries,
            "teacher_seconds": round(t.seconds, 3),
            "teacher_wall_seconds": round(self.wall_seconds, 3),
            "teacher_waited_seconds": round(t.waited_s, 3),
            "teacher_prompt_tokens": t.prompt_tokens,
            "teacher_output_tokens": t.output_tokens,
            "teacher_tokens_per_s": round(t.tokens_per_s, 2),
            "cost": round(cost, 6) if settings.price_input_per_1k or settings.price_output_per_1k else None,
            "price_per_1k": {"input": settings.price_input_per_1k, "output": settings.price_output_per_1k},
            "embedding_filter": self.embedding_filter,
            "teacher_errors": t.errors[:10],
        }


def structured_mode(settings: TeacherSettings, engine_kind: str, can_constrain: bool) -> str:
    """How replies are constrained: the setting, with `auto` resolved for the engine."""
    if not can_constrain:
        return "off"
    if settings.structured != "auto":
        return settings.structured
    return "json_schema" if engine_kind in ("openai", "llamacpp") else "off"


def progress_line(kept: int, size: int, t: TeacherStats, in_flight: int, wall: float, settings: TeacherSettings) -> str:
    """What the Data pane and `jobs --watch` show while a build runs (short: the pane cuts at 60)."""
    tok = t.prompt_tokens + t.output_tokens
    tok_s = f"{tok / 1000:.1f}k" if tok >= 1000 else str(tok)
    line = f"{t.calls} req ({in_flight} live), {tok_s} tok, {wall:.0f} s"
    if settings.price_input_per_1k or settings.price_output_per_1k:
        cost = (t.prompt_tokens * settings.price_input_per_1k + t.output_tokens * settings.price_output_per_1k) / 1000
        line += f", cost {cost:.4f}"
    return line


def generate(
    fmt: str,
    persona: Persona,
    teacher: Teacher,
    size: int,
    seed: int,
    options: dict[str, Any] | None = None,
    *,
    pack: PromptPack | None = None,
    engine_kind: str = "",
    cache: ReplyCache | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    embedder: Any = None,
) -> LlmResult:
    """`size` examples of `fmt` for `persona`, written by `teacher` (see the module docstring)."""
    settings = teacher.settings
    options = dict(options or {})
    pack = pack or load_pack(fmt)
    mode = structured_mode(settings, engine_kind, teacher.can_constrain)
    schema = pack.schema if mode != "off" else None
    max_tokens = settings.max_tokens or pack.max_tokens
    concurrency = settings.concurrency or (4 if engine_kind == "openai" else 1)
    max_attempts = settings.max_attempts or size * 4 + 10
    cancelled = cancelled or (lambda: False)
    cache = cache or ReplyCache(None, "")

    index = NearDuplicateIndex(settings.near_duplicate_threshold)
    embed = EmbeddingFilter(settings.embedding_threshold, embedder)
    leaks = ProbeLeakFilter(persona)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    malformed_examples: list[str] = []
    done: dict[int, dict[str, Any] | None] = {}  # index -> reply (None: the request failed)
    resumed = 0
    t0 = time.perf_counter()

    def work(i: int) -> tuple[int, dict[str, Any] | None]:
        p = plan(pack, persona, seed, i)
        reply = teacher.request(p.messages, max_tokens, (seed * 7919 + i) % 2**31, schema, mode)
        return i, (cache.add(i, reply) if reply is not None else None)

    def consider(i: int, got: dict[str, Any] | None) -> None:
        if got is None:
            rejected["failed_request"] += 1
            return
        obj, why = parse_reply(got["text"], got.get("finish_reason"), pack.schema)
        if obj is None:
            rejected["malformed"] += 1
            if len(malformed_examples) < MALFORMED_EXAMPLES:
                malformed_examples.append(f"#{i}: {why}")
            return
        record = to_record(fmt, obj, plan(pack, persona, seed, i).meta, options, persona)
        text = record_text(record)
        talk = meta_talk(text)
        if talk:
            rejected["meta_talk"] += 1
            return
        if leaks.leak(text):
            rejected["probe_leak"] += 1
            return
        key = " ".join(tokens(text))
        if key in seen:
            rejected["exact_duplicate"] += 1
            return
        if index.find(key.split()) is not None:
            rejected["near_duplicate"] += 1
            return
        if embed.check(target_text(record)) is not None:
            rejected["embedding_duplicate"] += 1
            return
        index.add(key.split())
        seen.add(key)
        record["meta"]["index"] = i
        records.append(record)

    next_i = 0  # next index to submit
    processed = 0  # every index below this has been considered
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher")
    pending: dict[Future, int] = {}
    try:
        while len(records) < size and processed < max_attempts and not cancelled():
            if processed not in done and processed in cache.replies:  # recorded by an earlier build: free
                done[processed] = cache.replies[processed]
                resumed += 1
            if processed in done:  # considered strictly in index order, whatever order replies came in
                consider(processed, done.pop(processed))
                processed += 1
                if progress:
                    progress(
                        len(records),
                        size,
                        progress_line(
                            len(records), size, teacher.stats, len(pending), time.perf_counter() - t0, settings
                        ),
                    )
                continue
            # Keep the pipe full, but never ask far past what is still needed.
            want = max(1, min(concurrency, size - len(records)))
            while len(pending) < want and next_i < max_attempts:
                if next_i >= processed and next_i not in cache.replies and next_i not in done:
                    pending[pool.submit(work, next_i)] = next_i
                next_i += 1
            if not pending:
                break
            finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.pop(fut)
                i, got = fut.result()  # TeacherError propagates from here
                done[i] = got
    finally:
        # However the build ends (done, cancelled, a fault of any type), the requests still in
        # flight end (they meet the same fault, or their timeout) before it returns or the error
        # is told, so nothing of this build reaches the teacher afterwards. A test's next build
        # against the same server met stray requests of a failed one when only TeacherError waited.
        pool.shutdown(wait=True, cancel_futures=True)
        cache.close()
    teacher_stats = teacher.stats
    if not records and not cancelled():
        malformed = rejected["malformed"]
        dups = rejected["exact_duplicate"] + rejected["near_duplicate"] + rejected["embedding_duplicate"]
        raise TeacherError(
            f"Teacher engine {teacher.label} returned nothing usable in {processed} tries "
            f"({malformed} malformed replies, {dups} duplicates, {rejected['meta_talk']} talking about the task); "
            "use a stronger teacher (an endpoint or a bigger model) or the template generator."
        )
    return LlmResult(
        records=records,
        attempts=processed,
        malformed=rejected["malformed"],
        exact_duplicates=rejected["exact_duplicate"],
        near_duplicates=rejected["near_duplicate"],
        teacher=teacher_stats,
        rejected=dict(rejected),
        malformed_examples=malformed_examples,
        resumed=resumed,
        wall_seconds=time.perf_counter() - t0,
        structured=mode,
        concurrency=concurrency,
        pack=pack.path,
        embedding_filter=(
            f"off: {embed.error}"
            if embed.error
            else "off"
            if settings.embedding_threshold <= 0
            else f"MiniLM cosine >= {settings.embedding_threshold}"
        ),
    )
