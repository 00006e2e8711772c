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
from trainers.data.generate.banks import load_bank
from trainers.data.generate.voice import (
    Clause,
    Pronouns,
    _lower_pronoun,
    cap,
    clause_variants,
    first_to_other,
    lower_first,
    persona_clauses,
    pronouns_for,
)
from trainers.data.quality import (
    DEFAULT_THRESHOLD,
    NearDuplicateIndex,
    ProbeLeakFilter,
    tokens,
)


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
    # Per clause, its wordings (see voice.clause_variants) and how often each was used.
    variants: list[list[Clause]] = field(default_factory=list)
    variant_usage: list[list[int]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    # The most examples one example line may be quoted in (generate sets it from the size), so
    # the persona's own words season the data instead of becoming its stock sentences.
    line_cap: int = 10**9
    # How often {third}/{Third} name the persona by pronoun instead of name (documents set it
    # after the lead, so an article does not repeat the name in every sentence).
    pronoun_rate: float = 0.0
    # When set, `wording` prefers wordings it accepts (a question about the honey wants the
    # wording that still mentions the honey).
    wants: Callable[[Clause], bool] | None = None
    drawn: list[tuple[int, int]] = field(default_factory=list)  # wordings used by the current candidate
    # Words the persona's text capitalises mid-sentence (names, places): never lower-cased.
    names: frozenset[str] = frozenset()
    # How often each bank sentence was used, per bank, for formats that spread their stock
    # sentences evenly (a sentence in too many examples is a stock phrase).
    bank_usage: dict[str, dict[str, int]] = field(default_factory=dict)
    # The weight of a habit of speech (from the style field) against a trait's when picking clauses.
    style_share: float = 0.35

    @classmethod
    def from_persona(cls, persona: Persona, speech: bool = True) -> Material:
        """`speech`: wordings may use spoken contractions ("I've got a cat"); documents say False."""
        clauses = persona_clauses(persona)
        if not clauses:
            raise TemplateError(
                f"Persona {persona.id!r} has no traits, facts or summary to build examples from; "
                "add traits in the Personas pane."
            )
        name = persona.name.strip() or persona.id
        lines = [ln.strip() for ln in persona.examples if ln.strip()]
        pron = pronouns_for(persona)
        short = name.split()[0]
        para = load_bank("paraphrase")
        variants = []
        for c in clauses:
            forms = clause_variants(
                c.first, para["synonyms"], para["contractions"], speech=speech, expansions=para["expansions"]
            )
            variants.append(
                [
                    Clause(
                        c.source,
                        f,
                        _lower_pronoun(first_to_other(f, "you")),
                        first_to_other(f, short, pron),
                        _lower_pronoun(first_to_other(f, pron.subj, pron)),
                        c.original,
                    )
                    for f in forms
                ]
            )
        return cls(
            persona=persona,
            name=name,
            short=name.split()[0],
            pron=pronouns_for(persona),
            clauses=clauses,
            # A habit of speech ("I call everyone 'mate'") is about how the persona talks, whatever
            # its words name.
            topics=[
                ["speech", *[t for t in classify(c.first) if t != "speech"]]
                if c.source == "style"
                else classify(c.first)
                for c in clauses
            ],
            lines=lines,
            style=persona.style.strip(),
            usage=[0] * len(clauses),
            line_usage=[0] * len(lines),
            variants=variants,
            variant_usage=[[0] * len(v) for v in variants],
            names=frozenset(
                set(
                    re.findall(
                        r"(?<=[a-z,;:] )[A-Z][a-z'-]+",
                        " ".join([persona.summary, *persona.facts, *(t.text for t in persona.traits)]),
                    )
                )
                | set(name.split())
            ),
        )

    # -- choosing, evenly
    def pick_clause(
        self, rng: random.Random, exclude: set[int] | frozenset[int] = frozenset(), among: list[int] | None = None
    ) -> int:
        pool = [i for i in (among if among is not None else range(len(self.clauses))) if i not in exclude]
        if not pool:
            pool = [i for i in range(len(self.clauses)) if i not in exclude] or list(range(len(self.clauses)))
        # The summary restates traits and facts, so its sentences come up far less often than they
        # do; habits of speech show in how the persona talks more than in being talked about
        # (said outright, "I swear mildly" reads as a stage direction: each format sets how often,
        # `STYLE_SHARE`).
        share = {"summary": 0.12, "style": self.style_share}
        weights = [share.get(self.clauses[i].source, 1.0) / (1 + self.usage[i]) ** 2 for i in pool]
        i = rng.choices(pool, weights=weights)[0]
        self.usage[i] += 1
        return i

    def pick_line(self, rng: random.Random) -> str | None:
        ids = [k for k in range(len(self.lines)) if self.line_usage[k] < self.line_cap]
        if not ids:
            return None
        weights = [1.0 / (1 + self.line_usage[k]) ** 2 for k in ids]
        k = rng.choices(ids, weights=weights)[0]
        self.line_usage[k] += 1
        return self.lines[k]

    def line_on(self, rng: random.Random, topic: str) -> str | None:
        """One of the persona's example lines on `topic` (the least used), or None: a line is
        quoted only where it fits what is being talked about."""
        ids = [k for k, ln in enumerate(self.lines) if topic in classify(ln) and self.line_usage[k] < self.line_cap]
        if not ids:
            return None
        weights = [1.0 / (1 + self.line_usage[k]) ** 2 for k in ids]
        k = rng.choices(ids, weights=weights)[0]
        self.line_usage[k] += 1
        return self.lines[k]

    def trait_ids(self, clause_ids: list[int]) -> list[str]:
        out: list[str] = []
        for i in clause_ids:
            src = self.clauses[i].source
            if src.startswith("trait:") and src[6:] not in out:
                out.append(src[6:])
        return out

    def wording(self, clause: int) -> Clause:
        """One of the clause's wordings, the least used first, so no wording dominates."""
        forms = self.variants[clause] if self.variants else [self.clauses[clause]]
        if len(forms) == 1:
            self.drawn.append((clause, 0))
            return forms[0]
        used = self.variant_usage[clause]
        weights = [1.0 / (1 + u) ** 3 for u in used]
        if self.wants is not None and any(self.wants(f) for f in forms):
            weights = [w if self.wants(f) else 0.0 for w, f in zip(weights, forms)]
        k = self.rng.choices(range(len(forms)), weights=weights)[0]
        used[k] += 1
        self.drawn.append((clause, k))
        return forms[k]

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
            "refl": p.refl,
            "style": self.style,
        }
        if clause is not None:
            c = self.wording(clause)
            third = c.third_pron if self.pronoun_rate and self.rng.random() < self.pronoun_rate else c.third
            v.update(
                first=c.first,
                First=cap(c.first),
                you=c.second,
                third=third,
                Third=cap(third),
                pron_clause=c.third_pron,
                Pron_clause_cap=cap(c.third_pron),
            )
        if line is not None:
            v["line"] = line.strip().strip('"').rstrip()
        return v

    def fill(self, template: str, clause: int | None = None, line: str | None = None, **extra: str) -> str:
        return template.format_map({**self.values(clause, line), **extra})


def join_sentences(parts: list[str], names: set[str] | frozenset[str] = frozenset()) -> str:
    """Join reply parts with spaces; a part after a comma-ended opener loses its capital, unless
    it starts with one of `names` (the persona's proper nouns: "Ah, Tomas, my late husband")."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        first = m.group(0) if (m := re.match(r"[A-Za-z']*", part)) else ""
        if out.endswith(",") and first not in names:
            part = lower_first(part)
        out = f"{out} {part}" if out else part
    return out


@dataclass
class TemplateResult:
    records: list[dict[str, Any]]
    attempts: int
    exact_duplicates: int
    near_duplicates: int
    # Candidates refused because they held one of the persona's evaluation probes (a bank
    # question can be word for word a knowledge probe: "Can you swim?").
    probe_leaks: int = 0


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
    """Draw candidates from `fmt.build` until `size` distinct ones are kept (or attempts run out).

    A candidate that contains one of the persona's evaluation probes is refused (and counted):
    the evaluation must never ask what training showed."""
    from trainers.data.formats import record_text

    options = dict(options or {})
    material = Material.from_persona(persona, speech=getattr(fmt, "SPEECH", True))
    rng = random.Random(f"{seed}:{fmt.NAME}:template")
    material.rng = rng
    material.line_cap = max(2, int(getattr(fmt, "LINE_SHARE", 0.05) * size))
    material.style_share = getattr(fmt, "STYLE_SHARE", material.style_share)
    index = NearDuplicateIndex(threshold)
    leaks = ProbeLeakFilter(persona)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    attempts = exact = near = leaked = 0
    # The same persona content (clauses in the same wordings) in at most `content_cap` examples:
    # past that, a persona too small for `size` gets fewer examples, not the same sentences in
    # new wrapping.
    content_cap = max(3, size // 50)
    content_count: dict[frozenset[tuple[int, int]], int] = {}
    max_attempts = size * 12 + 200
    while len(records) < size and attempts < max_attempts:
        attempts += 1
        material.drawn = []
        record = fmt.build(material, rng, options)
        drawn = frozenset(material.drawn)
        if content_count.get(drawn, 0) >= content_cap:
            near += 1
            continue
        text = record_text(record)
        if leaks and leaks.leak(text):
            leaked += 1
            continue
        key = " ".join(tokens(text))
        if key in seen:
            exact += 1
            continue
        if not index.add(key.split()):
            near += 1
            continue
        seen.add(key)
        content_count[drawn] = content_count.get(drawn, 0) + 1
        records.append(record)
        if progress and (len(records) % 25 == 0 or len(records) == size):
            progress(len(records), size)
        if cancelled and attempts % 50 == 0 and cancelled():
            break
    return TemplateResult(records, attempts, exact, near, leaked)
