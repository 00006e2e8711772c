"""The one interface every text engine offers, and the errors engines raise.

Chat, streaming chat, plain completion and the log-probabilities of a continuation (perplexity,
hits@1 and knowledge probes need them) — the same calls whether the model is a GGUF in
llama.cpp, an HF model in transformers, or an OpenAI-compatible endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = Mapping[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


class EngineError(ValueError):
    """An engine cannot do what was asked; the message is one sentence naming the fix."""


class EngineUnsupported(EngineError):
    """The engine (or the server behind it) does not offer this operation at all."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by all engines; temperature 0 means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Sampling:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise EngineError(f"unknown sampling setting {unknown[0]!r}; known: {', '.join(sorted(known))}.")
        values = {k: v for k, v in kwargs.items() if v is not None or k == "seed"}
        stop = values.get("stop", ())
        values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop or ())
        s = cls(**values)
        if s.max_tokens < 1:
            raise EngineError(f"max_tokens must be at least 1, not {s.max_tokens}.")
        if not 0 < s.top_p <= 1:
            raise EngineError(f"top_p must be in (0, 1], not {s.top_p}.")
        if s.temperature < 0:
            raise EngineError(f"temperature must be 0 (greedy) or more, not {s.temperature}.")
        return s


@runtime_checkable
class Engine(Protocol):
    """What chat, evaluation and the dataset generators call; see engines.open_engine."""

    def chat(self, messages: Sequence[Message], **sampling: Any) -> str: ...

    def stream_chat(self, messages: Sequence[Message], **sampling: Any) -> Iterator[str]: ...

    def complete(self, prompt: str, **sampling: Any) -> str: ...

    def logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Natural-log probability of each token of `continuation` following `prompt`."""
        ...

    def close(self) -> None: ...


def check_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Plain dicts with a known role and string content, or an EngineError naming the message."""
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise EngineError(f"message {i} has role {role!r}; use system, user or assistant.")
        if not isinstance(content, str):
            raise EngineError(f"message {i} ({role}) has no text content.")
        out.append({"role": role, "content": content})
    if not out:
        raise EngineError("a chat needs at least one message.")
    return out


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop string (excluded), and whether one was found."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopStream:
    """Applies stop strings to streamed pieces, holding back text that may start a stop string."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        text, found = cut_at_stop(self.pending, self.stop)
        if found:
            self.stopped = True
            self.pending = ""
            return text
        keep = max((k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
