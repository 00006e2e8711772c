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

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from evaluators.stats import Z95, wilson  # noqa: F401  (re-exported: callers import wilson from here)

if TYPE_CHECKING:
    from sessions.model import Persona, Trait

EXPRESSED = "expressed"
NOT_SHOWN = "not_shown"
CONTRADICTED = "contradicted"
LABELS = (EXPRESSED, NOT_SHOWN, CONTRADICTED)
UNPARSEABLE = "unparseable"  # a judge that stayed off-format: counted, never scored

# The flag column: a trait is "known" at or above KNOWS_AT, "rarely shown" below SHOWN_AT. Fixed
# bars on one model's rates, not a comparison with the base: a run can be measurably above the
# base on a trait and still below both bars, so the word says that and not "not learned" (which
# the demo printed beside traits its run-against-base table found up).
KNOWS_AT = 2 / 3
SHOWN_AT = 0.5
FLAG_KNOWS_NOT_SHOWN = "KNOWS, RARELY SHOWS"
FLAG_SHOWN_NOT_KNOWN = "shows, not known"
FLAG_NEITHER = "below both bars"
FLAG_CONTRADICTS = "contradicts"
FLAG_OK = "ok"
FLAG_NO_DATA = "no probes"


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


def render_chat(engine: ProbeEngine, messages: Sequence[Mapping[str, str]], model: str | None = None) -> str:
    """The prompt text the model sees for `messages`, ending where the assistant's reply begins.

    Uses, in order: the engine's own `render_chat(messages)`; the chat template in a llama.cpp
    model's GGUF metadata (what llama-cpp-python's chat uses); the engine's HF tokenizer; the HF
    tokenizer of `model` from engines.models. Never a template of our own making.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    render = getattr(engine, "render_chat", None)
    if callable(render):
        return render(msgs)
    llm: Any = getattr(engine, "llm", None)  # a llama_cpp.Llama when the engine has one
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
    by: str = "mean"
    scorer: str = "logprob"

    @property
    def knows_total(self) -> bool:
        return self.logp_affirm > self.logp_deny

    @property
    def knows_mean(self) -> bool:
        return self.logp_affirm / max(self.tokens_affirm, 1) > self.logp_deny / max(self.tokens_deny, 1)

    @property
    def knows(self) -> bool:
        return self.knows_mean if self.by == "mean" else self.knows_total

    def to_dict(self) -> dict[str, Any]:
        # Both verdicts are kept, so the length bias of the summed score stays measurable.
        return {
            **asdict(self),
            "knows": self.knows,
            "knows_total": self.knows_total,
            "knows_mean": self.knows_mean,
            "kind": "knowledge",
        }


def knowledge_cells(
    engine: ProbeEngine,
    persona: Persona,
    model: str,
    system: str | None = None,
    by: str = "mean",
    model_name: str | None = None,
    on_cell: Callable[[KnowledgeCell], None] | None = None,
) -> list[KnowledgeCell]:
    """Every knowledge probe of every trait, scored by comparing log P(affirm) and log P(deny),
    per token (`by="mean"`, the default: a summed score prefers the shorter answer) or summed."""
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
                model=model,
                trait=trait.id,
                probe=i,
                question=probe.question,
                affirm=probe.affirm,
                deny=probe.deny,
                logp_affirm=sum(a),
                logp_deny=sum(d),
                tokens_affirm=len(a),
                tokens_deny=len(d),
                by=by,
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


class ProbeEngine(Protocol):
    """What the probes call: an engines.base.Engine, or evaluators.drift's Fork of one."""

    def chat(self, messages: Sequence[Mapping[str, str]], **sampling: Any) -> str: ...

    def logprobs(self, prompt: str, continuation: str) -> list[float]: ...


class Labeller(Protocol):
    name: str

    def label(self, persona: Persona, trait: Trait, prompt: str, reply: str) -> Label: ...


_SUFFIXES = "s|es|ed|d|ing|er|ers|ies|ied"
# A negation up to three words before a phrase turns it to the other side ("I don't keep bees",
# "I can't stand coffee"); a phrase that carries its own negation ("can't swim") is matched whole.
_NEGATION = re.compile(
    r"\b(?:not|no|never|nor|without|hardly|cannot|can't|cant|don't|dont|won't|wont|didn't|"
    r"doesn't|isn't|wasn't|haven't|hasn't|couldn't|wouldn't|can't stand|hate|hates|dislike)\b"
    r"(?:[^\w'.;:,!?]+[\w']+){0,2}[^\w'.;:,!?]*$"  # in the same clause: "No; tea" is not negated
)


def _word_pattern(word: str) -> str:
    """One word and its inflections: bee/bees, map/maps/mapped/mapping, tune/tuned/tuning,
    swim/swimmer/swimming — but not "been" for "bee" or "team" for "tea"."""
    w = re.escape(word)
    stems = [w + "(?:" + _SUFFIXES + ")?"]
    # A changed stem is a word only with its suffix: "bee" must not match "be", "being" or "bed".
    if len(word) > 2 and word.endswith("e") and word[-2] not in "aeiou":
        stems.append(re.escape(word[:-1]) + "(?:ing|ed|er|ers)")  # tune -> tun(ing)
    if len(word) > 2 and word.endswith("y"):
        stems.append(re.escape(word[:-1]) + "(?:ies|ied)")  # carry -> carr(ies)
    if len(word) > 2 and word[-1].isalpha() and word[-1] not in "aeiouwxy":
        stems.append(w + re.escape(word[-1]) + "(?:ing|ed|er|ers)")  # swim -> swimm(ing)
    return "(?:" + "|".join(stems) + ")"


def marker_pattern(phrase: str) -> re.Pattern[str] | None:
    """A whole-word pattern for a marker phrase, every word allowed its inflections."""
    words = re.findall(r"[\w']+", phrase.lower())
    if not words:
        return None
    body = r"[\s\-]+".join(_word_pattern(w) for w in words)
    return re.compile(r"(?<![\w'])" + body + r"(?![\w'])")


def _spans(text: str, phrases: Iterable[str]) -> list[tuple[str, int, int]]:
    out = []
    for phrase in phrases:
        pat = marker_pattern(phrase.strip())
        if pat is None:
            continue
        out += [(phrase.strip(), m.start(), m.end()) for m in pat.finditer(text)]
    return out


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION.search(text[:start]))


def directed_hits(reply: str, markers: Iterable[str], contra: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(phrases that show the trait, phrases that contradict it) found in `reply`.

    A showing phrase under a negation counts against the trait and a contradicting one under a
    negation counts for it; a contradicting phrase inside a showing match ("swim" in "can't swim")
    is not counted twice.
    """
    text = reply.lower().replace("\u2019", "'")
    shows: list[str] = []
    against: list[str] = []
    pos = _spans(text, markers)
    for phrase, start, _ in pos:
        (against if _negated(text, start) else shows).append(phrase)
    for phrase, start, end in _spans(text, contra):
        if any(s <= start and end <= e for _, s, e in pos):
            continue
        (shows if _negated(text, start) else against).append(phrase)
    return list(dict.fromkeys(shows)), list(dict.fromkeys(against))


def marker_hits(reply: str, markers: Iterable[str]) -> list[str]:
    """The markers found in `reply` as whole words with their inflections, case-insensitive."""
    text = reply.lower().replace("\u2019", "'")
    return list(dict.fromkeys(phrase for phrase, _, _ in _spans(text, markers)))


class MarkerLabeller:
    """Judge-free labels from the trait's phrases, with direction: expressed when only showing
    phrases appear, contradicted when only contradicting ones do (or a showing phrase negated:
    "I've never kept bees"), not_shown when neither or both appear.
    """

    name = "markers"

    def label(self, persona: Persona, trait: Trait, prompt: str, reply: str) -> Label:
        contra = list(getattr(trait, "contra_markers", []) or [])
        if not trait.markers and not contra:
            return Label(UNPARSEABLE, "markers (none written)", {"markers": []})
        shows, against = directed_hits(reply, trait.markers, contra)
        if shows and not against:
            label = EXPRESSED
        elif against and not shows:
            label = CONTRADICTED
        else:
            label = NOT_SHOWN
        return Label(label, self.name, {"markers": shows, "contra": against})


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
    engine: ProbeEngine,
    persona: Persona,
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
    cells: list[ExpressionCell] = []
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


# ----------------------------------------------------------------------------- run vs base

ALPHA = 0.05
UP, DOWN, NO_DIFF, UNDECIDED = "up", "down", "no diff", "undecided"


def _get(cell: Any, key: str, default: Any = None) -> Any:
    return cell.get(key, default) if isinstance(cell, Mapping) else getattr(cell, key, default)


def _verdict(diff: float, p: float | None, alpha: float = ALPHA) -> str:
    if p is None:
        return UNDECIDED
    if p < alpha:
        return UP if diff > 0 else DOWN
    return NO_DIFF


def knowledge_comparison(
    cells: Iterable[KnowledgeCell | Mapping[str, Any]],
    model: str,
    base: str,
    traits: Sequence[str],
) -> dict[str, Any]:
    """The run against the base on the same knowledge probes: overall and per trait, each with
    both rates, the paired difference with Newcombe's 95% interval and the exact McNemar p.

    A comparison that could not reach p < 0.05 even if every probe flipped says so ("undecided")
    with the reason, instead of reporting "no diff".
    """
    from evaluators.stats import best_mcnemar_p, mcnemar_exact, newcombe_paired_diff

    cells = list(cells)
    mine = {(_get(c, "trait"), _get(c, "probe")): bool(_get(c, "knows")) for c in cells if _get(c, "model") == model}
    theirs = {(_get(c, "trait"), _get(c, "probe")): bool(_get(c, "knows")) for c in cells if _get(c, "model") == base}

    def compare(keys: list[tuple[Any, Any]], name: str) -> dict[str, Any]:
        a = sum(mine[k] and theirs[k] for k in keys)
        b = sum(mine[k] and not theirs[k] for k in keys)
        c = sum(not mine[k] and theirs[k] for k in keys)
        d = len(keys) - a - b - c
        n = len(keys)
        row: dict[str, Any] = {
            "trait": name,
            "n": n,
            "run": Rate(a + b, n).to_dict(),
            "base": Rate(a + c, n).to_dict(),
            "paired": {"both": a, "run_only": b, "base_only": c, "neither": d},
            "diff": (b - c) / n if n else None,
            "interval": list(newcombe_paired_diff(a, b, c, d)) if n else None,
        }
        if not n:
            row.update(p=None, verdict=UNDECIDED, why="no knowledge probes scored by both models")
        elif best_mcnemar_p(n) >= ALPHA:
            row.update(
                p=mcnemar_exact(b, c),
                verdict=UNDECIDED,
                why=f"{n} probe(s): even all flipping gives p {best_mcnemar_p(n):.3g}; write at least 6",
            )
        else:
            p = mcnemar_exact(b, c)
            row.update(p=p, verdict=_verdict(b - c, p), why="")
        return row

    shared = sorted(set(mine) & set(theirs), key=lambda k: (str(k[0]), int(k[1] or 0)))
    overall = compare(shared, "all traits")
    per_trait = [compare([k for k in shared if k[0] == t], t) for t in traits]
    return {
        "model": model,
        "base": base,
        "overall": overall,
        "traits": per_trait,
        "test": "exact McNemar (paired on probes)",
    }


def expression_comparison(
    cells: Iterable[ExpressionCell | Mapping[str, Any]],
    model: str,
    base: str,
    traits: Sequence[str],
) -> dict[str, Any]:
    """Expression rate per trait, run against base: Newcombe's 95% interval of the difference,
    Fisher's exact p, and Holm's adjustment across the traits that can be decided."""
    from evaluators.stats import best_fisher_p, fisher_exact, holm, newcombe_diff

    cells = [c for c in cells if _get(c, "label") in LABELS]
    rows = []
    for t in traits:
        r = [c for c in cells if _get(c, "model") == model and _get(c, "trait") == t]
        b = [c for c in cells if _get(c, "model") == base and _get(c, "trait") == t]
        kr = sum(_get(c, "label") == EXPRESSED for c in r)
        kb = sum(_get(c, "label") == EXPRESSED for c in b)
        nr, nb = len(r), len(b)
        row: dict[str, Any] = {
            "trait": t,
            "run": Rate(kr, nr).to_dict(),
            "base": Rate(kb, nb).to_dict(),
            "contradicted_run": sum(_get(c, "label") == CONTRADICTED for c in r),
            "contradicted_base": sum(_get(c, "label") == CONTRADICTED for c in b),
            "diff": (kr / nr - kb / nb) if nr and nb else None,
            "interval": list(newcombe_diff(kr, nr, kb, nb)) if nr and nb else None,
            "p": fisher_exact(kr, nr - kr, kb, nb - kb) if nr and nb else None,
            "why": "",
        }
        if not nr or not nb:
            row["why"] = "no scored replies from " + (
                "either model" if not nr and not nb else "the run" if not nr else "the base"
            )
        rows.append(row)
    m = sum(1 for row in rows if not row["why"])
    for row in rows:
        if row["why"]:
            continue
        best = best_fisher_p(row["run"]["n"], row["base"]["n"])
        if best * m >= ALPHA:
            row["why"] = (
                f"{row['run']['n']}+{row['base']['n']} replies: even all vs none gives p {best:.2g}, "
                f"Holm over {m} traits needs < {ALPHA / m:.2g}; sample more"
            )
    decided = [row["p"] if not row["why"] else None for row in rows]
    for row, adj in zip(rows, holm(decided)):
        row["p_holm"] = adj
        row["verdict"] = UNDECIDED if row["why"] else _verdict(row["diff"], adj)
    return {
        "model": model,
        "base": base,
        "traits": rows,
        "test": "Fisher's exact per trait, Holm-adjusted across traits",
    }
