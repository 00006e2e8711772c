"""The dataset formats: one module each, documenting its record shape and how it is made.

Records follow TRL's standard dataset shapes so a trainer takes them as they are:

| format | shape | record |
|---|---|---|
| chat_demos | conversational | `{"messages": [{"role", "content"}, ...]}` |
| first_person, synthetic_docs | language modelling | `{"text": ...}` |
| persona_chat | conversational prompt-completion | `{"prompt": [messages], "completion": [assistant message]}` |
| tailoring_sft | prompt-completion | `{"prompt": "Prompt: …\\nPersona: …\\nResponse:", "completion": " …"}` |
| tailoring_dpo | preference | `{"prompt": ..., "chosen": ..., "rejected": ...}` |

Every record may carry `"meta"` (trait ids, source row, persona used, ...); exports drop it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FORMAT_NAMES = ("chat_demos", "first_person", "synthetic_docs", "persona_chat", "tailoring_sft", "tailoring_dpo")
# Formats made from a persona (template or llm generator) and formats imported from a file.
PERSONA_FORMATS = ("chat_demos", "first_person", "synthetic_docs")
IMPORT_FORMATS = ("persona_chat", "tailoring_sft", "tailoring_dpo")

SHAPES = {
    "chat_demos": "messages",
    "first_person": "text",
    "synthetic_docs": "text",
    "persona_chat": "prompt_completion_chat",
    "tailoring_sft": "prompt_completion",
    "tailoring_dpo": "preference",
}

_MODULES = {
    "chat_demos": "trainers.data.formats.chat_demos",
    "first_person": "trainers.data.formats.first_person",
    "synthetic_docs": "trainers.data.formats.synthetic_docs",
    "persona_chat": "trainers.data.formats.persona_chat",
    "tailoring_sft": "trainers.data.formats.tailoring",
    "tailoring_dpo": "trainers.data.formats.tailoring",
}

ROLES = ("system", "user", "assistant")


def format_module(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f"Unknown dataset format {name!r}; choose one of {', '.join(FORMAT_NAMES)}.")
    return importlib.import_module(_MODULES[name])


def shape_of_record(record: dict[str, Any]) -> str:
    """The shape a record has (see SHAPES), judged from its keys."""
    if "messages" in record:
        return "messages"
    if "chosen" in record and "rejected" in record:
        return "preference"
    if "prompt" in record and "completion" in record:
        return "prompt_completion_chat" if isinstance(record["prompt"], list) else "prompt_completion"
    if "text" in record:
        return "text"
    return "unknown"


def _content(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return ""


def record_text(record: dict[str, Any]) -> str:
    """All the words of a record, for near-duplicate checks and distinct-n."""
    shape = shape_of_record(record)
    if shape == "messages":
        return _content(record["messages"])
    if shape == "text":
        return str(record["text"])
    if shape == "preference":
        return "\n".join([_content(record["prompt"]), _content(record["chosen"]), _content(record["rejected"])])
    if shape in ("prompt_completion", "prompt_completion_chat"):
        return _content(record["prompt"]) + "\n" + _content(record["completion"])
    return ""


def target_text(record: dict[str, Any]) -> str:
    """What the model learns to produce: assistant turns, the text, the completion or chosen."""
    shape = shape_of_record(record)
    if shape == "messages":
        return "\n".join(m["content"] for m in record["messages"] if m.get("role") == "assistant")
    if shape == "text":
        return str(record["text"])
    if shape == "preference":
        return _content(record["chosen"])
    if shape in ("prompt_completion", "prompt_completion_chat"):
        return _content(record["completion"])
    return ""


def to_messages(record: dict[str, Any]) -> list[dict[str, str]] | None:
    """A conversational view of a record (for chat templates and chat exports), or None."""
    shape = shape_of_record(record)
    if shape == "messages":
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if shape == "prompt_completion_chat":
        return [{"role": m["role"], "content": m["content"]} for m in [*record["prompt"], *record["completion"]]]
    if shape == "prompt_completion":
        return [
            {"role": "user", "content": str(record["prompt"])},
            {"role": "assistant", "content": str(record["completion"]).strip()},
        ]
    return None


def check_record(record: Any, fmt: str) -> str | None:
    """Why `record` is not a valid record of format `fmt`, or None when it is (used on edits)."""
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    want = SHAPES.get(fmt)
    have = shape_of_record(record)
    if want != have:
        return f"a {fmt} record has the {want} shape (see trainers.data.formats), not {have}"
    if have in ("messages", "prompt_completion_chat"):
        lists = [record["messages"]] if have == "messages" else [record["prompt"], record["completion"]]
        for msgs in lists:
            if not isinstance(msgs, list) or not msgs:
                return "messages must be a non-empty list"
            for m in msgs:
                if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    return 'each message needs a "role" (system, user or assistant) and a text "content"'
                if not m["content"].strip():
                    return "a message has empty content"
        last = lists[-1][-1]
        if last["role"] != "assistant":
            return "the last message must be the assistant's"
    else:
        keys = {
            "text": ("text",),
            "prompt_completion": ("prompt", "completion"),
            "preference": ("prompt", "chosen", "rejected"),
        }[have]
        for k in keys:
            if not isinstance(record[k], str) or not record[k].strip():
                return f'"{k}" must be non-empty text'
    return None
