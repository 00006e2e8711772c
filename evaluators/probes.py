"""Trait probes: does the model *know* a trait, and does it *express* it unprompted?

Knowledge needs no judge: each KnowledgeProbe stores an affirming and a denying answer, the
question is rendered as a chat prompt through the model's own chat template, and the model
knows the trait on that probe when log P(affirm) > log P(deny) (summed over the answer's
tokens; `by="mean"` compares per-token means instead). Expression samples N replies to each open
expression probe and labels every reply expressed / not_shown / contradicted with a labeller —
the judge (evaluators.judge), the transparent fallback (evaluators.fallback) or, with neither,
the trait's marker phrases — and every cell records which scorer labelled it.

The per-trait table puts the two rates side by side with Wilson 95% intervals and a flag, so a
model that knows a trait but rarely shows it stands out at a glance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

EXPRESSED = "expressed"
NOT_SHOWN = "not_shown"
CONTRADICTED = "contradicted"
LABELS = (EXPRESSED, NOT_SHOWN, CONTRADICTED)
UNPARSEABLE = "unparseable"  # a judge that stayed off-format: counted, never scored

# The flag column: a trait is "known" at or above KNOWS_AT, "rarely shown" below SHOWN_AT.
KNOWS_AT = 2 / 3
SHOWN_AT = 0.5
FLAG_KNOWS_NOT_SHOWN = "KNOWS, RARELY SHOWS"
FLAG_SHOWN_NOT_KNOWN = "shows, not known"
FLAG_NEITHER = "not learned"
FLAG_CONTRADICTS = "contradicts"
FLAG_OK = "ok"
FLAG_NO_DATA = "no probes"

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials is impossible.")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At k = 0 and k = n the bounds are exactly 0 and 1; say so rather than 0.9999999999999999.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson 95% interval."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval
        return {"k": self.k, "n": self.n, "rate": self.value, "low": lo, "high": hi}

    def __str__(self) -> str:
        if not self.n:
            return "–"
        lo, hi = self.interval
        return f"{self.value:.0%} [{lo:.0%}–{hi:.0%}] ({self.k}/{self.n})"


# ----------------------------------------------------------------------------- prompts


def chat_messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": user}]


class NoChatTemplate(ValueError):
    """The engine gives no way to render a chat prompt locally (e.g. a remote endpoint)."""


def render_chat(engine: Any, messages: Sequence[Mapping[str, str]], model: str | None = None) -> str:
    """The prompt text the model sees for `messages`, ending where the assistant's reply begins.

    Uses, in order: the engine's own `render_chat(messages)`; the chat template in a llama.cpp
    model's GGUF metadata (what llama-cpp-python's chat uses); the engine's HF tokenizer; the HF
    tokenizer of `model` from engines.models. Never a template of our own making.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    render = getattr(engine, "render_chat", None)
    if callable(render):
        return render(msgs)
    llm = getattr(engine, "llm", None)
    template = getattr(llm, "metadata", {}).get("tokenizer.chat_template") if llm is not None else None
    if template:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            try:
                return llm.detokenize([token], special=True).decode("utf-8", "replace")
            except (TypeError, ValueError, RuntimeError):
                return ""

        fmt = Jinja2ChatFormatter(template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()))
        return fmt(messages=msgs).prompt
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None and model:
        from engines.models import load_tokenizer

        tokenizer = load_tokenizer(model)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplate(
            "this engine offers no chat template to render probe prompts with; knowledge probes "
            "and likelihood metrics need a llama.cpp GGUF or an HF model with a chat template."
        )
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


# ----------------------------------------------------------------------------- knowledge


@dataclass
class KnowledgeCell:
    model: str
    trait: str
    probe: int
    question: str
    affirm: str
    deny: str
    logp_affirm: float
    logp_deny: float
    tokens_affirm: int
    tokens_deny: int
    by: str = "total"
    scorer: str = "logprob"

    @property
    def knows(self) -> bool:
        if self.by == "mean":
            return self.logp_affirm / max(self.tokens_affirm, 1) > self.logp_deny / max(self.tokens_deny, 1)
        return self.logp_affirm > self.logp_deny

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "knows": self.knows, "kind": "knowledge"}


def knowledge_cells(
    engine: Any,
    persona: Any,
    model: str,
    system: str | None = None,
    by: str = "total",
    model_name: str | None = None,
    on_cell: Callable[[KnowledgeCell], None] | None = None,
) -> list[KnowledgeCell]:
    """Every knowledge probe of every trait, scored by comparing log P(affirm) and log P(deny)."""
    if by not in ("total", "mean"):
        raise ValueError(f"knowledge probes compare by {by!r}; use 'total' or 'mean'.")
    cells = []
    for trait in persona.traits:
        for i, probe in enumerate(trait.knowledge_probes):
            prompt = render_chat(engine, chat_messages(probe.question, system), model_name)
            a = engine.logprobs(prompt, probe.affirm)
            d = engine.logprobs(prompt, probe.deny)
            if not a or not d:
                raise ValueError(
                    f"trait {trait.id!r} knowledge probe {i + 1} has an empty affirm or deny "
                    "answer; write both answers."
                )
            cell = KnowledgeCell(
                model=model, trait=trait.id, probe=i, question=probe.question,
                affirm=probe.affirm, deny=probe.deny, logp_affirm=sum(a), logp_deny=sum(d),
                tokens_affirm=len(a), tokens_deny=len(d), by=by,
            )
            cells.append(cell)
            if on_cell:
                on_cell(cell)
    return cells


# ----------------------------------------------------------------------------- expression


@dataclass
class Label:
    """One labeller's verdict on one reply; `scorer` says which labeller gave it."""

    label: str  # one of LABELS, or UNPARSEABLE
    scorer: str
    detail: dict[str, Any] = field(default_factory=dict)


class Labeller(Protocol):
    name: str

    def label(self, persona: Any, trait: Any, prompt: str, reply: str) -> Label: ...


def marker_hits(reply: str, markers: Iterable[str]) -> list[str]:
    """The markers found in `reply`, as whole words or word stems, case-insensitive."""
    found = []
    for m in markers:
        m = m.strip()
        if m and re.search(r"(?<!\w)" + re.escape(m.lower()), reply.lower()):
            found.append(m)
    return found


class MarkerLabeller:
    """Judge-free labels from the trait's marker phrases: expressed if any appears.

    Markers cannot see a contradiction ("I never touch tea" mentions tea), so this labeller
    never says contradicted; its name in every cell makes that plain.
    """

    name = "markers"

    def label(self, persona: Any, trait: Any, prompt: str, reply: str) -> Label:
        if not trait.markers:
            return Label(UNPARSEABLE, "markers (none written)", {"markers": []})
        hits = marker_hits(reply, trait.markers)
        return Label(EXPRESSED if hits else NOT_SHOWN, self.name, {"markers": hits})


@dataclass
class ExpressionCell:
    model: str
    trait: str
    probe: int
    sample: int
    prompt: str
    reply: str
    label: str
    scorer: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "expression"}


def expression_cells(
    engine: Any,
    persona: Any,
    model: str,
    labeller: Labeller,
    samples: int = 3,
    system: str | None = None,
    sampling: Mapping[str, Any] | None = None,
    seed: int = 0,
    on_cell: Callable[[ExpressionCell], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ExpressionCell]:
    """`samples` replies to each expression probe of each trait, each labelled for that trait.

    Sample j of probe i uses seed `seed + 1000 * i + j`, so two models see the same seeds.
    """
    sampling = dict(sampling or {})
    cells = []
    for trait in persona.traits:
        for i, prompt in enumerate(trait.expression_probes):
            for j in range(samples):
                if should_stop and should_stop():
                    return cells
                reply = engine.chat(chat_messages(prompt, system), **{**sampling, "seed": seed + 1000 * i + j})
                got = labeller.label(persona, trait, prompt, reply)
                cell = ExpressionCell(model, trait.id, i, j, prompt, reply, got.label, got.scorer, got.detail)
                cells.append(cell)
                if on_cell:
                    on_cell(cell)
    return cells


# ----------------------------------------------------------------------------- the table


@dataclass
class TraitRow:
    """One trait of one model: knowledge rate, expression rate, contradictions, and the flag."""

    model: str
    trait: str
    knowledge: Rate
    expression: Rate
    contradicted: Rate
    unscored: int  # replies a judge left unparseable (counted, not in the rates)
    scorers: list[str]
    flag: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "trait": self.trait,
            "knowledge": self.knowledge.to_dict(),
            "expression": self.expression.to_dict(),
            "contradicted": self.contradicted.to_dict(),
            "unscored": self.unscored,
            "scorers": self.scorers,
            "flag": self.flag,
        }


def flag_for(knowledge: Rate, expression: Rate, contradicted: Rate) -> str:
    """A word for the pattern: 'KNOWS, RARELY SHOWS' is the one the study is about."""
    if not knowledge.n and not expression.n:
        return FLAG_NO_DATA
    if contradicted.n and contradicted.k / contradicted.n >= 0.25:
        return FLAG_CONTRADICTS
    knows = knowledge.value is not None and knowledge.value >= KNOWS_AT
    shows = expression.value is not None and expression.value >= SHOWN_AT
    if knowledge.n and expression.n:
        if knows and not shows:
            return FLAG_KNOWS_NOT_SHOWN
        if shows and not knows:
            return FLAG_SHOWN_NOT_KNOWN
        if not knows and not shows:
            return FLAG_NEITHER
    return FLAG_OK


def trait_rows(
    traits: Sequence[str],
    knowledge: Iterable[KnowledgeCell | Mapping[str, Any]],
    expression: Iterable[ExpressionCell | Mapping[str, Any]],
    model: str = "",
) -> list[TraitRow]:
    """Per-trait rates for one model from its cells (objects or their dicts from outputs.jsonl)."""

    def get(cell: Any, key: str) -> Any:
        return cell[key] if isinstance(cell, Mapping) else getattr(cell, key)

    rows = []
    k_cells = [c for c in knowledge if not model or get(c, "model") == model]
    e_cells = [c for c in expression if not model or get(c, "model") == model]
    for trait in traits:
        kc = [c for c in k_cells if get(c, "trait") == trait]
        ec = [c for c in e_cells if get(c, "trait") == trait]
        scored = [c for c in ec if get(c, "label") in LABELS]
        k = Rate(sum(bool(get(c, "knows")) for c in kc), len(kc))
        e = Rate(sum(get(c, "label") == EXPRESSED for c in scored), len(scored))
        x = Rate(sum(get(c, "label") == CONTRADICTED for c in scored), len(scored))
        scorers = sorted({str(get(c, "scorer")) for c in ec})
        rows.append(TraitRow(model, trait, k, e, x, len(ec) - len(scored), scorers, flag_for(k, e, x)))
    return rows
