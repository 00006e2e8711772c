"""The teacher generator: any engine writes the examples, one prompt per format.

Each persona format's `llm_build(material, rng, options, ask)` builds one prompt, calls `ask`
(the teacher) and parses the reply; a reply it cannot use makes it return None. A weak model's
garbage is expected: malformed replies are counted and skipped, a failing call is counted and
retried with the next example, and only a teacher that yields nothing usable at all — or cannot
be reached — stops the build, with one sentence saying so. Kept examples pass the same exact and
near-duplicate filter as the template generator's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessions.model import Persona
from trainers.dataset_quality import DEFAULT_THRESHOLD, NearDuplicateIndex, tokens
from trainers.generate.template import Material

MAX_CONSECUTIVE_FAILURES = 5


class TeacherError(ValueError):
    """The teacher engine cannot be used; one sentence naming the engine and the fix."""


@dataclass
class TeacherStats:
    calls: int = 0
    failed_calls: int = 0
    seconds: float = 0.0
    output_tokens: int = 0
    output_chars: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


class Teacher:
    """Wraps an engine as the `ask(messages, max_tokens) -> str` that formats call."""

    def __init__(self, engine: Any, label: str, seed: int, temperature: float = 0.8, top_p: float = 0.95,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        self.engine = engine
        self.label = label
        self.seed = seed
        self.temperature = temperature
        self.top_p = top_p
        self.stats = TeacherStats()
        self._consecutive = 0
        tok = getattr(engine, "tokenize", None)
        self._count = count_tokens or (lambda s: len(tok(s)) if tok and s else len(s.split()))

    def __call__(self, messages: list[dict[str, str]], max_tokens: int = 160) -> str:
        self.stats.calls += 1
        t0 = time.perf_counter()
        try:
            reply = self.engine.chat(messages, max_tokens=max_tokens, temperature=self.temperature,
                                     top_p=self.top_p, seed=self.seed + self.stats.calls)
        except Exception as e:  # noqa: BLE001 - any engine failure is counted, then judged below
            self.stats.failed_calls += 1
            self._consecutive += 1
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.stats.errors.append(msg)
            if self.stats.calls == 1 or self._consecutive >= MAX_CONSECUTIVE_FAILURES:
                if isinstance(e, ValueError):  # an EngineError: already one sentence with its fix
                    raise TeacherError(f"Teacher engine {self.label}: {msg}") from e
                raise TeacherError(
                    f"Teacher engine {self.label} failed ({msg.rstrip('.')}); check its settings and "
                    "that it is reachable, then build again."
                ) from e
            return ""
        self.stats.seconds += time.perf_counter() - t0
        self._consecutive = 0
        reply = reply if isinstance(reply, str) else ""
        self.stats.output_chars += len(reply)
        try:
            self.stats.output_tokens += self._count(reply)
        except Exception:  # noqa: BLE001 - counting is a statistic, never a failure
            self.stats.output_tokens += len(reply.split())
        return reply


@dataclass
class LlmResult:
    records: list[dict[str, Any]]
    attempts: int
    malformed: int
    exact_duplicates: int
    near_duplicates: int
    teacher: TeacherStats


def generate(
    fmt: Any,
    persona: Persona,
    teacher: Teacher,
    size: int,
    seed: int,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_attempts: int | None = None,
) -> LlmResult:
    from trainers.formats import record_text

    options = dict(options or {})
    material = Material.from_persona(persona)
    rng = random.Random(f"{seed}:{fmt.NAME}:llm")
    index = NearDuplicateIndex(threshold)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    attempts = malformed = exact = near = 0
    max_attempts = max_attempts or size * 4 + 10
    while len(records) < size and attempts < max_attempts:
        if cancelled and cancelled():
            break
        attempts += 1
        try:
            record = fmt.llm_build(material, rng, options, teacher)
        except TeacherError:
            raise
        except Exception as e:  # noqa: BLE001 - a reply that breaks the parser is a malformed reply
            teacher.stats.errors.append(f"parse: {type(e).__name__}: {e}")
            record = None
        if record is None:
            malformed += 1
        else:
            key = " ".join(tokens(record_text(record)))
            if key in seen:
                exact += 1
            elif not index.add(key.split()):
                near += 1
            else:
                seen.add(key)
                records.append(record)
        if progress:
            progress(len(records), size)
    if not records and not (cancelled and cancelled()):
        raise TeacherError(
            f"Teacher engine {teacher.label} returned nothing usable in {attempts} tries "
            f"({malformed} malformed replies, {exact + near} duplicates); use a stronger teacher "
            "(an endpoint or a bigger model) or the template generator."
        )
    return LlmResult(records, attempts, malformed, exact, near, teacher.stats)
