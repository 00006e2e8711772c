"""The offline generator: examples assembled from the persona and the phrase banks, seeded.

Each format module's `build(material, rng, options)` assembles one candidate example; this
module turns the persona into `Material` (its traits, facts and summary as clauses in every
person, grouped by topic, with usage counts so every clause gets its share) and keeps drawing
candidates until it has `size` of them that are neither exact nor near duplicates (token
Jaccard >= 0.8) of one already kept. The same persona, options and seed give the same examples.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessions.model import Persona
from trainers.dataset_quality import DEFAULT_THRESHOLD, NearDuplicateIndex, tokens
from trainers.generate.banks import load_bank
from trainers.generate.voice import Clause, Pronouns, cap, lower_first, persona_clauses, pronouns_for


def _keyword_hit(text_low: str, words: list[str], keyword: str) -> int | None:
    """Position (word index) of the first word matching `keyword`, or None."""
    if " " in keyword or "'" in keyword:
        pos = text_low.find(keyword)
        return len(text_low[:pos].split()) if pos >= 0 else None
    for i, w in enumerate(words):
        if (w == keyword or w == keyword + "s") if len(keyword) <= 3 else w.startswith(keyword):
            return i
    return None


def classify(text: str) -> list[str]:
    """Topics of a clause, main topic first (that of its earliest keyword); ["general"] if none."""
    topics = load_bank("topics")
    low = text.lower()
    words = re.findall(r"[a-z']+", low)
    hits: list[tuple[int, int, str]] = []
    weak: list[tuple[int, int, str]] = []
    for name, spec in topics.items():
        for kind, bucket in (("keywords", hits), ("weak", weak)):
            best = None
            for kw in spec.get(kind, []):
                pos = _keyword_hit(low, words, kw)
                if pos is not None and (best is None or (pos, -len(kw)) < best):
                    best = (pos, -len(kw))
            if best is not None:
                bucket.append((best[0], best[1], name))
    chosen = sorted(hits) or sorted(weak)
    out: list[str] = []
    for _, _, name in chosen:
        if name not in out:
            out.append(name)
    return out or ["general"]


class TemplateError(ValueError):
    """The persona cannot feed the template generator; the message says what to add."""


@dataclass
class Material:
    """One persona, prepared for the template formats."""

    persona: Persona
    name: str
    short: str
    pron: Pronouns
    clauses: list[Clause]
    topics: list[list[str]]  # per clause, main topic first
    lines: list[str]
    style: str
    usage: list[int] = field(default_factory=list)
    line_usage: list[int] = field(default_factory=list)

    @classmethod
    def from_persona(cls, persona: Persona) -> Material:
        clauses = persona_clauses(persona)
        if not clauses:
            raise TemplateError(
                f"Persona {persona.id!r} has no traits, facts or summary to build examples from; "
                "add traits in the Personas pane."
            )
        name = persona.name.strip() or persona.id
        lines = [ln.strip() for ln in persona.examples if ln.strip()]
        return cls(
            persona=persona,
            name=name,
            short=name.split()[0],
            pron=pronouns_for(persona),
            clauses=clauses,
            topics=[classify(c.first) for c in clauses],
            lines=lines,
            style=persona.style.strip(),
            usage=[0] * len(clauses),
            line_usage=[0] * len(lines),
        )

    # -- choosing, evenly
    def pick_clause(self, rng: random.Random, exclude: set[int] | frozenset[int] = frozenset(),
                    among: list[int] | None = None) -> int:
        pool = [i for i in (among if among is not None else range(len(self.clauses))) if i not in exclude]
        if not pool:
            pool = [i for i in range(len(self.clauses)) if i not in exclude] or list(range(len(self.clauses)))
        weights = [1.0 / (1 + self.usage[i]) ** 2 for i in pool]
        i = rng.choices(pool, weights=weights)[0]
        self.usage[i] += 1
        return i

    def pick_line(self, rng: random.Random) -> str | None:
        if not self.lines:
            return None
        weights = [1.0 / (1 + u) ** 2 for u in self.line_usage]
        k = rng.choices(range(len(self.lines)), weights=weights)[0]
        self.line_usage[k] += 1
        return self.lines[k]

    def trait_ids(self, clause_ids: list[int]) -> list[str]:
        out: list[str] = []
        for i in clause_ids:
            src = self.clauses[i].source
            if src.startswith("trait:") and src[6:] not in out:
                out.append(src[6:])
        return out

    # -- filling templates
    def values(self, clause: int | None = None, line: str | None = None) -> dict[str, str]:
        p = self.pron
        v = {
            "name": self.name,
            "short": self.short,
            "pron": p.subj,
            "Pron": cap(p.subj),
            "Pron_cap": cap(p.subj),
            "pos": p.pos,
            "Pos_cap": cap(p.pos),
            "obj": p.obj,
            "style": self.style,
        }
        if clause is not None:
            c = self.clauses[clause]
            v.update(
                first=c.first,
                First=cap(c.first),
                you=c.second,
                third=c.third,
                Third=cap(c.third),
                pron_clause=c.third_pron,
                Pron_clause_cap=cap(c.third_pron),
            )
        if line is not None:
            v["line"] = line.strip().strip('"').rstrip()
        return v

    def fill(self, template: str, clause: int | None = None, line: str | None = None, **extra: str) -> str:
        return template.format_map({**self.values(clause, line), **extra})


def join_sentences(parts: list[str]) -> str:
    """Join reply parts with spaces; a part after a comma-ended opener loses its capital."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out.endswith(","):
            part = lower_first(part)
        out = f"{out} {part}" if out else part
    return out


@dataclass
class TemplateResult:
    records: list[dict[str, Any]]
    attempts: int
    exact_duplicates: int
    near_duplicates: int


def generate(
    fmt: Any,
    persona: Persona,
    size: int,
    seed: int,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> TemplateResult:
    """Draw candidates from `fmt.build` until `size` distinct ones are kept (or attempts run out)."""
    from trainers.formats import record_text

    options = dict(options or {})
    material = Material.from_persona(persona)
    rng = random.Random(f"{seed}:{fmt.NAME}:template")
    index = NearDuplicateIndex(threshold)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    attempts = exact = near = 0
    max_attempts = size * 12 + 200
    while len(records) < size and attempts < max_attempts:
        attempts += 1
        record = fmt.build(material, rng, options)
        text = record_text(record)
        key = " ".join(tokens(text))
        if key in seen:
            exact += 1
            continue
        if not index.add(key.split()):
            near += 1
            continue
        seen.add(key)
        records.append(record)
        if progress and (len(records) % 25 == 0 or len(records) == size):
            progress(len(records), size)
        if cancelled and attempts % 50 == 0 and cancelled():
            break
    return TemplateResult(records, attempts, exact, near)
