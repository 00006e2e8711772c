"""The llm generator's settings: a dataset's `[datasets.llm]` table, typed and checked.

    [[datasets]]
    id = "odile-chat"
    format = "chat_demos"
    generator = "llm"
    engine = "teacher"          # an [[engines]] id
    [datasets.llm]
    concurrency = 8
    requests_per_minute = 300
    price_input_per_1k = 0.00015
    price_output_per_1k = 0.0006

Every key is optional. A wrong type or range is refused before any request, in one sentence that
names the dataset, the key and the fix. The older top-level keys `extra.temperature` and
`extra.max_attempts` still count when the table does not set them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STRUCTURED = ("auto", "json_schema", "llama_schema", "json_object", "off")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TeacherSettings:
    concurrency: int = field(
        default=0,
        metadata=_help("Requests in flight at once; 0 = 4 for an endpoint (openai kind), 1 for an in-process model."),
    )
    requests_per_minute: float = field(
        default=0.0, metadata=_help("Upper bound on requests started per minute (the API's rate limit); 0 = no limit.")
    )
    max_retries: int = field(
        default=4,
        metadata=_help("Retries of one request after a 429, a 5xx or a dropped connection (Retry-After is honoured)."),
    )
    retry_max_wait: float = field(
        default=60.0, metadata=_help("Longest wait in seconds before one retry, whatever Retry-After asks.")
    )
    timeout: float = field(default=0.0, metadata=_help("Seconds one request may take; 0 = the engine's own timeout."))
    structured: str = field(
        default="auto",
        metadata=_help(
            "How replies are constrained to the pack's JSON schema: auto (json_schema for endpoints, a grammar for "
            "llama.cpp, none for transformers), json_schema (OpenAI structured outputs), llama_schema "
            "(llama-cpp-python's server), json_object (any JSON), off (ask in words only); replies are parsed "
            "strictly either way."
        ),
    )
    temperature: float = field(default=0.8, metadata=_help("Sampling temperature of the teacher."))
    top_p: float = field(default=0.95, metadata=_help("Nucleus sampling of the teacher."))
    max_tokens: int = field(default=0, metadata=_help("Longest reply in tokens; 0 = the prompt pack's."))
    max_attempts: int = field(default=0, metadata=_help("Most prompts tried before giving up; 0 = 4 x size + 10."))
    prompt_pack: str = field(
        default="",
        metadata=_help(
            "A prompt pack TOML to use instead of the shipped one of the format (relative to the session file)."
        ),
    )
    price_input_per_1k: float = field(
        default=0.0,
        metadata=_help("Price of 1,000 prompt tokens (any currency) for the cost in the statistics; 0 = not priced."),
    )
    price_output_per_1k: float = field(default=0.0, metadata=_help("Price of 1,000 generated tokens (same currency)."))
    near_duplicate_threshold: float = field(
        default=0.8, metadata=_help("Token Jaccard at or above which a reply is a near duplicate of one kept.")
    )
    embedding_threshold: float = field(
        default=0.93,
        metadata=_help("MiniLM cosine similarity at or above which a reply is a near duplicate of one kept; 0 = off."),
    )
    resume: bool = field(
        default=True,
        metadata=_help(
            "Reuse the replies earlier builds of the same spec (same persona, pack, teacher, seed) recorded "
            "in their job folders, so a killed build continues where it stopped."
        ),
    )


class TeacherSettingsError(ValueError):
    """The `[datasets.llm]` table cannot be used; one sentence naming the key and the fix."""


def _type_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def teacher_settings(dataset_id: str, extra: dict[str, Any]) -> TeacherSettings:
    """The settings of a dataset spec's `extra` (its `llm` table), checked."""
    raw = extra.get("llm", {})
    where = f"Dataset {dataset_id!r}"
    if not isinstance(raw, dict):
        raise TeacherSettingsError(f"{where} has llm = {raw!r}; make it a table ([datasets.llm]) of teacher settings.")
    raw = dict(raw)
    for legacy in ("temperature", "max_attempts"):
        if legacy not in raw and extra.get(legacy) is not None:
            raw[legacy] = extra[legacy]
    fields = {f.name: f for f in dataclasses.fields(TeacherSettings)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise TeacherSettingsError(
            f"{where} has an unknown key {unknown[0]!r} in [datasets.llm]; known keys: {', '.join(fields)}."
        )
    values: dict[str, Any] = {}
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    for name, value in raw.items():
        kind = kinds[str(fields[name].type)]
        if not _type_ok(value, kind):
            raise TeacherSettingsError(
                f"{where} has [datasets.llm] {name} = {value!r}; it must be {'a number' if kind is float else 'an integer' if kind is int else 'true or false' if kind is bool else 'text'}."
            )
        values[name] = float(value) if kind is float else value
    s = TeacherSettings(**values)

    def bad(name: str, rule: str) -> TeacherSettingsError:
        return TeacherSettingsError(f"{where} has [datasets.llm] {name} = {getattr(s, name)!r}; {rule}.")

    for name in ("concurrency", "max_retries", "max_tokens", "max_attempts"):
        if getattr(s, name) < 0:
            raise bad(name, "use 0 or a positive whole number")
    if s.concurrency > 64:
        raise bad("concurrency", "use at most 64 requests in flight")
    for name in ("requests_per_minute", "retry_max_wait", "timeout", "price_input_per_1k", "price_output_per_1k"):
        if getattr(s, name) < 0:
            raise bad(name, "use 0 or a positive number")
    if s.structured not in STRUCTURED:
        raise bad("structured", f"use one of {', '.join(STRUCTURED)}")
    if s.temperature < 0:
        raise bad("temperature", "use 0 (greedy) or more")
    if not 0 < s.top_p <= 1:
        raise bad("top_p", "use a number above 0 and at most 1")
    if not 0 < s.near_duplicate_threshold <= 1:
        raise bad("near_duplicate_threshold", "use a number above 0 and at most 1")
    if not 0 <= s.embedding_threshold <= 1:
        raise bad("embedding_threshold", "use 0 (off) or a number up to 1")
    return s
