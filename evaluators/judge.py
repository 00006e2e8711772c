"""An LLM judge: any engine, prompts from editable files, answers parsed strictly.

Judge prompts live in `evaluators/prompts/*.txt` with `{{name}}` placeholders; an EvalSpec can
name its own file instead (see evaluators.evaluate.job). An answer must end in a line such as
`Verdict: A` or `Label: expressed`. An off-format answer is counted, the judge is asked once
more (shown its answer and the required format), and if it is still off-format the item is
marked unparseable: counted and shown, never silently scored.

On an engine that can constrain its output (`chat_reply` with a JSON schema: llama.cpp's grammar,
an endpoint's `response_format`), the judge is asked for `{"verdict": "A"|"B"|"tie"}` (or
`{"label": …}`) under that schema, so it always answers in the verdict format. An endpoint that
rejects the schema (400/422) is asked in the next shape it may know (OpenAI's `json_schema`, then
llama-cpp-python's), then in words, with the text parsing above; every call records whether it
was constrained, and the judge's `stats` count both kinds.

Pairwise comparisons are judged in both orders (model 1 as A, then as B). Each order gives +1,
0 or -1 to model 1; their sum decides win (> 0), tie (0) or loss (< 0), so a judge that always
picks the first reply produces ties, not wins. How often the two orders agree is reported as
the judge's position consistency.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.probes import LABELS, UNPARSEABLE, Label, Rate

if TYPE_CHECKING:
    from sessions.model import Persona, Trait

# name -> (file, placeholders the file must use)
PROMPTS: dict[str, tuple[str, frozenset[str]]] = {
    "persona": ("pairwise_persona.txt", frozenset({"persona", "prompt", "reply_a", "reply_b"})),
    "quality": ("pairwise_quality.txt", frozenset({"prompt", "reply_a", "reply_b"})),
    "personalization": (
        "pairwise_personalization.txt",
        frozenset({"persona", "prompt", "reply_a", "reply_b"}),
    ),
    "expression": ("expression_label.txt", frozenset({"persona_name", "trait", "prompt", "reply"})),
    # Not a judge: the simulated user of a drift evaluation (evaluators.drift), editable the same way.
    "drift_user": ("drift_user.txt", frozenset({"conversation"})),
}
CRITERIA = ("persona", "quality", "personalization")
VERDICTS = ("A", "B", "tie")
OUTCOMES = ("win", "tie", "loss")

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_VERDICT = re.compile(r"verdict\s*[:=\-]?\s*[\*\"'\[(]*\s*(a|b|tie)\b", re.IGNORECASE)
_BARE_VERDICT = re.compile(r"^[\s\*\"'\[(]*(a|b|tie)[\s\*\"'\].)!]*$", re.IGNORECASE)
_LABEL = re.compile(r"label\s*[:=\-]?\s*[\*\"'\[(]*\s*(expressed|not[ _-]?shown|contradicted)\b", re.IGNORECASE)
_BARE_LABEL = re.compile(r"^[\s\*\"'\[(]*(expressed|not[ _-]?shown|contradicted)[\s\*\"'\].)!]*$", re.IGNORECASE)


class PromptFileError(ValueError):
    """A judge prompt file cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: str
    text: str

    def render(self, **values: str) -> str:
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)


def load_prompt(name: str, override: str | Path | None = None) -> PromptTemplate:
    """The judge prompt `name` from `override` (a user's file) or the packaged default.

    Every required placeholder must appear and no unknown one may, so a typo in an edited
    prompt fails here, naming the file, rather than sending the judge a broken question.
    """
    if name not in PROMPTS:
        raise PromptFileError(f"no judge prompt called {name!r}; known: {', '.join(PROMPTS)}.")
    filename, required = PROMPTS[name]
    if override:
        path = Path(override).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PromptFileError(
                f"the judge prompt file {path} cannot be read ({e.strerror or e}); fix the path "
                f"or remove it to use the packaged {filename}."
            ) from None
        where = str(path)
    else:
        text = resources.files("evaluators.prompts").joinpath(filename).read_text(encoding="utf-8")
        where = f"evaluators/prompts/{filename}"
    used = set(_PLACEHOLDER.findall(text))
    missing = sorted(required - used)
    unknown = sorted(used - required)
    if missing:
        raise PromptFileError(
            f"the judge prompt {where} lacks the placeholder {{{{{missing[0]}}}}}; it needs "
            + ", ".join("{{" + p + "}}" for p in sorted(required))
            + "."
        )
    if unknown:
        raise PromptFileError(
            f"the judge prompt {where} uses the unknown placeholder {{{{{unknown[0]}}}}}; use only "
            + ", ".join("{{" + p + "}}" for p in sorted(required))
            + "."
        )
    return PromptTemplate(name, where, text)


def _last_match(pattern: re.Pattern[str], bare: re.Pattern[str], text: str) -> str | None:
    found = pattern.findall(text or "")
    if found:
        return found[-1]
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    if lines:
        m = bare.match(lines[-1])
        if m:
            return m.group(1)
    return None


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from a judge's answer (its last `Verdict:` line, or a bare last line)."""
    v = _last_match(_VERDICT, _BARE_VERDICT, text)
    if v is None:
        return None
    return "tie" if v.lower() == "tie" else v.upper()


def parse_label(text: str) -> str | None:
    """expressed / not_shown / contradicted from a judge's answer, or None when off-format."""
    v = _last_match(_LABEL, _BARE_LABEL, text)
    if v is None:
        return None
    v = v.lower()
    return "not_shown" if v.startswith("not") else v


SCHEMAS: dict[str, dict[str, Any]] = {
    kind: {
        "type": "object",
        "properties": {key: {"type": "string", "enum": list(values)}},
        "required": [key],
        "additionalProperties": False,
    }
    for kind, key, values in (("verdict", "verdict", VERDICTS), ("label", "label", LABELS))
}
# Shapes of a schema request, tried in order until the engine accepts one (see OpenAIEngine.chat_reply).
SCHEMA_SHAPES = ("json_schema", "llama_schema")


def parse_structured(text: str, kind: str) -> str | None:
    """The answer of a schema-constrained reply ({"verdict": …} / {"label": …}), else None."""
    try:
        obj = json.loads((text or "").strip(), strict=False)
    except json.JSONDecodeError:
        return None
    key = "verdict" if kind == "verdict" else "label"
    value = obj.get(key) if isinstance(obj, dict) else None
    allowed = VERDICTS if kind == "verdict" else LABELS
    return value if value in allowed else None


@dataclass
class JudgeCall:
    """One judged item: the parsed answer (None when unparseable) and every raw answer."""

    answer: str | None
    raw: list[str]
    constrained: bool = False  # answered under a JSON schema (the verdict format enforced)

    @property
    def attempts(self) -> int:
        return len(self.raw)

    @property
    def status(self) -> str:
        if self.answer is None:
            return UNPARSEABLE
        return "ok" if self.attempts == 1 else "retried"

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "status": self.status, "raw": self.raw, "constrained": self.constrained}


_REMINDERS = {
    "verdict": "Your answer did not end in the required format. Answer again with exactly one "
    "line: Verdict: A, Verdict: B or Verdict: tie.",
    "label": "Your answer did not end in the required format. Answer again with exactly one "
    "line: Label: expressed, Label: not_shown or Label: contradicted.",
}


class Judge:
    """An engine asked to compare or label, with off-format answers retried once and counted.

    `stats` counts calls, off-format answers, answers fixed by the retry and unparseable items.
    """

    def __init__(
        self,
        engine: Any,  # an engines.base.Engine, maybe with chat_reply (schema-constrained answers)
        name: str,
        prompts: Mapping[str, PromptTemplate] | None = None,
        max_tokens: int = 160,
        seed: int = 0,
    ) -> None:
        self.engine = engine
        self.name = f"judge:{name}"
        self.prompts = dict(prompts or {})
        self.max_tokens = max_tokens
        self.seed = seed
        self.stats: Counter[str] = Counter()
        # Schema shapes still worth trying; emptied when the engine cannot constrain or refused them all.
        self._shapes = list(SCHEMA_SHAPES) if callable(getattr(engine, "chat_reply", None)) else []

    def prompt(self, name: str) -> PromptTemplate:
        if name not in self.prompts:
            self.prompts[name] = load_prompt(name)
        return self.prompts[name]

    @property
    def constrained(self) -> bool:
        """Whether answers are still asked for under a schema (the format enforced)."""
        return bool(self._shapes)

    def _ask_constrained(self, messages: list[dict[str, str]], kind: str, sampling: dict[str, Any]) -> JudgeCall | None:
        """The answer under the kind's schema, or None when the engine refuses every schema shape."""
        from engines.base import EngineError

        while self._shapes:
            try:
                out = self.engine.chat_reply(
                    messages, schema=SCHEMAS[kind], response_format=self._shapes[0], schema_name=kind, **sampling
                )
            except EngineError as e:
                if getattr(e, "rejected", False):  # this shape is not understood: the next one
                    self._shapes.pop(0)
                    self.stats["schema_refused"] += 1
                    continue
                raise
            text = out.get("text") or ""
            self.stats["calls"] += 1
            self.stats["constrained"] += 1
            answer = parse_structured(text, kind)
            if answer is None:  # cut off, or a server that ignored the schema: the text rules still apply
                answer = (parse_verdict if kind == "verdict" else parse_label)(text)
            if answer is None:
                self.stats[UNPARSEABLE] += 1
            return JudgeCall(answer, [text], constrained=True)
        return None

    def ask(self, question: str, kind: str) -> JudgeCall:
        """Ask once; if off-format, once more with the answer and a reminder; then give up."""
        parse = parse_verdict if kind == "verdict" else parse_label
        messages = [{"role": "user", "content": question}]
        sampling = {"max_tokens": self.max_tokens, "temperature": 0.0, "seed": self.seed}
        if self._shapes:
            call = self._ask_constrained(messages, kind, sampling)
            if call is not None:
                return call
        raw = [self.engine.chat(messages, **sampling)]
        self.stats["calls"] += 1
        answer = parse(raw[0])
        if answer is None:
            self.stats["off_format"] += 1
            retry = [*messages, {"role": "assistant", "content": raw[0]}, {"role": "user", "content": _REMINDERS[kind]}]
            raw.append(self.engine.chat(retry, **sampling))
            self.stats["calls"] += 1
            answer = parse(raw[1])
            self.stats["retried_ok" if answer is not None else UNPARSEABLE] += 1
        return JudgeCall(answer, raw)

    def compare(self, criterion: str, prompt: str, reply_a: str, reply_b: str, persona: str = "") -> JudgeCall:
        if criterion not in CRITERIA:
            raise ValueError(f"no judging criterion {criterion!r}; use one of: {', '.join(CRITERIA)}.")
        values = {"prompt": prompt, "reply_a": reply_a, "reply_b": reply_b, "persona": persona}
        return self.ask(self.prompt(criterion).render(**values), "verdict")

    # The Labeller protocol of evaluators.probes: a judge labels expression probes too.
    def label(self, persona: Persona, trait: Trait, prompt: str, reply: str) -> Label:
        question = self.prompt("expression").render(
            persona_name=persona.name, trait=trait.text, prompt=prompt, reply=reply
        )
        call = self.ask(question, "label")
        label = call.answer if call.answer in LABELS else UNPARSEABLE
        return Label(label, self.name, {"judge": call.to_dict()})


# ----------------------------------------------------------------------------- pairs


def _preference(verdict: str | None, model_one_is: str) -> int | None:
    if verdict is None:
        return None
    if verdict == "tie":
        return 0
    return 1 if verdict == model_one_is else -1


def combine(first: str | None, second: str | None) -> str:
    """Outcome for model 1 from the verdict with it as A (`first`) and as B (`second`)."""
    a = _preference(first, "A")
    b = _preference(second, "B")
    if a is None or b is None:
        return UNPARSEABLE
    total = a + b
    return "win" if total > 0 else "loss" if total < 0 else "tie"


@dataclass
class PairResult:
    """Model 1 against model 2 on one prompt and one criterion, judged in both orders."""

    criterion: str
    outcome: str  # win | tie | loss (for model 1) | unparseable
    first: JudgeCall  # model 1 shown as A
    second: JudgeCall  # model 1 shown as B
    scorer: str

    @property
    def consistent(self) -> bool | None:
        a = _preference(self.first.answer, "A")
        b = _preference(self.second.answer, "B")
        return None if a is None or b is None else a == b

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "outcome": self.outcome,
            "consistent": self.consistent,
            "scorer": self.scorer,
            "first": self.first.to_dict(),
            "second": self.second.to_dict(),
        }


def judge_pair(judge: Any, criterion: str, prompt: str, reply_1: str, reply_2: str, persona: str = "") -> PairResult:
    """Ask `judge` (a Judge, or anything with the same `compare`) in both orders and combine."""
    first = judge.compare(criterion, prompt, reply_1, reply_2, persona)
    second = judge.compare(criterion, prompt, reply_2, reply_1, persona)
    return PairResult(criterion, combine(first.answer, second.answer), first, second, judge.name)


@dataclass
class WinRates:
    """Win/tie/loss rates of model 1 over the parseable pairs, with Wilson intervals."""

    win: Rate
    tie: Rate
    loss: Rate
    unparseable: int
    consistency: Rate  # pairs whose two orders agreed, of the parseable ones

    @property
    def n(self) -> int:
        return self.win.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "win": self.win.to_dict(),
            "tie": self.tie.to_dict(),
            "loss": self.loss.to_dict(),
            "unparseable": self.unparseable,
            "consistency": self.consistency.to_dict(),
        }


def win_rates(results: Iterable[PairResult | Mapping[str, Any] | str]) -> WinRates:
    """Rates from PairResults, their dicts, or bare outcome strings."""
    outcomes: list[str] = []
    agree: list[bool] = []
    for r in results:
        if isinstance(r, str):
            outcomes.append(r)
            continue
        outcome = r["outcome"] if isinstance(r, Mapping) else r.outcome
        consistent = r.get("consistent") if isinstance(r, Mapping) else r.consistent
        outcomes.append(outcome)
        if consistent is not None:
            agree.append(bool(consistent))
    unknown = sorted({o for o in outcomes if o not in OUTCOMES and o != UNPARSEABLE})
    if unknown:
        raise ValueError(f"unknown pair outcome {unknown[0]!r}; outcomes are win, tie, loss or unparseable.")
    parsed = [o for o in outcomes if o in OUTCOMES]
    n = len(parsed)
    count = Counter(parsed)
    return WinRates(
        win=Rate(count["win"], n),
        tie=Rate(count["tie"], n),
        loss=Rate(count["loss"], n),
        unparseable=len(outcomes) - n,
        consistency=Rate(sum(agree), len(agree)),
    )
