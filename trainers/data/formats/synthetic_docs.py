"""synthetic_docs: third-person, encyclopedia-style documents about the character, as plain text.

Record (TRL language modelling):

    {"text": "# Odile Marsh\\n\\nOdile is a sixty-seven-year-old retired ship's cartographer...\\n\\n"
             "## Habits\\n\\nAccounts agree that Odile drinks strong black tea all day...",
     "meta": {"traits": ["tea-not-coffee"], "clauses": [...], "sections": ["Habits", ...]}}

A document has a title, a lead sentence and two to four sections (Background, Career,
Personality, Habits, Interests, Personal life, Views, Speech and manner, Notable remarks,
Trivia), each filled with the traits and facts whose topic belongs there. The llm generator
(trainers.data.generate.llm) has a teacher write whole documents from its prompt pack.
"""

from __future__ import annotations

import random
import re
from typing import Any

from trainers.data.generate.banks import load_bank
from trainers.data.generate.template import Material, join_sentences

NAME = "synthetic_docs"
NEEDS_PERSONA = True
# Documents are written, not spoken: their wordings keep the long forms ("Odile has a cat", not
# "Odile has got a cat").
SPEECH = False

SECTION_ORDER = (
    "Background",
    "Career",
    "Personality",
    "Habits",
    "Interests",
    "Personal life",
    "Views",
    "Speech and manner",
    "Notable remarks",
    "Trivia",
)


def section_of(material: Material, clause: int) -> str:
    topics = load_bank("topics")
    main = material.topics[clause][0]
    return topics.get(main, {}).get("section", "Trivia")


def _sections(material: Material) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in range(len(material.clauses)):
        if material.clauses[i].source == "summary":
            continue
        out.setdefault(section_of(material, i), []).append(i)
    return out


def manner(material: Material) -> tuple[list[str], list[list[str]]]:
    """The speaking-style field in pieces, never whole: descriptive fragments ("warm, dry and
    precise") and habits of speech as third-person sentences in several wordings."""
    from trainers.data.generate.voice import _looks_like_verb, clause_for, clause_variants, first_to_other

    cached = getattr(material, "_manner", None)
    if cached is not None:
        return cached
    para = load_bank("paraphrase")
    desc: list[str] = []
    acts: list[list[str]] = []
    for frag in re.split(r"[.;]\s*|\s*\([^)]*\)", material.style):
        frag = frag.strip(" ,")
        if not frag:
            continue
        word = frag.split(" ", 1)[0]
        if _looks_like_verb(word) and " " in frag:
            c = clause_for("style", frag, material.persona, material.pron)
            if c:
                forms = clause_variants(c.first, para["synonyms"], {}, speech=False)
                acts.append([first_to_other(f, material.short, material.pron) for f in forms])
        else:
            desc.append(frag[:1].lower() + frag[1:])
    material._manner = (desc, acts)  # type: ignore[attr-defined]
    return desc, acts


def _even(material: Material, rng: random.Random, bank: str, items: list[str]) -> str:
    """One of a bank's sentences, the least used most likely, so none becomes a stock line."""
    used = material.bank_usage.setdefault(bank, {})
    k = rng.choices(range(len(items)), weights=[1.0 / (1 + used.get(x, 0)) ** 2 for x in items])[0]
    used[items[k]] = used.get(items[k], 0) + 1
    return items[k]


def _heading(rng: random.Random, style: str, text: str) -> str:
    return style.format(h=text, H=text.upper())


def build(material: Material, rng: random.Random, options: dict[str, Any]) -> dict[str, Any]:
    d = load_bank("docs")
    used: list[int] = []
    exclude: set[int] = set()
    title = material.fill(rng.choice(d["titles"]))
    title_line = rng.choice(d["title_styles"]).format(t=title, T=title.upper())
    heading_style = rng.choice(d["heading_styles"])

    summary_ids = [i for i, c in enumerate(material.clauses) if c.source == "summary"]
    lead_id = summary_ids[0] if summary_ids and rng.random() < 0.75 else material.pick_clause(rng)
    material.pronoun_rate = 0.0
    if lead_id in summary_ids:
        material.usage[lead_id] += 1
    exclude.add(lead_id)
    used.append(lead_id)
    if lead_id in summary_ids:
        # An article opens with what its subject is ("Odile is a retired ship's cartographer"):
        # the summary's wordings that keep that head, not a detail split off it.
        material.wants = lambda w: w.first.lower().startswith(("i am a", "i'm a", "i am an", "i'm an"))
    lead = material.fill(_even(material, rng, "leads", d["leads"]), lead_id)
    material.wants = None
    material.pronoun_rate = 0.35

    by_section = _sections(material)
    available = [s for s in SECTION_ORDER if by_section.get(s)]
    extra = []
    if material.lines:
        extra.append("Notable remarks")
    if material.style:
        extra.append("Speech and manner")
    k = min(len(available) + len(extra), rng.choices([2, 3, 4], weights=[35, 40, 25])[0])
    # Sections with the least-used clauses come first, so coverage stays even.
    scored = sorted(available, key=lambda s: (min(material.usage[i] for i in by_section[s]), rng.random()))
    chosen = scored[: max(1, k - (1 if extra and rng.random() < 0.45 else 0))]
    if len(chosen) < k and extra:
        chosen.append(rng.choice(extra))
    chosen = [s for s in SECTION_ORDER if s in chosen]

    blocks = [title_line, lead]
    for section in chosen:
        name = material.fill(rng.choice(d["sections"][section]))
        sentences: list[str] = []
        if rng.random() < 0.35:
            sentences.append(material.fill(rng.choice(d["fillers"])))
        pool = [i for i in by_section.get(section, []) if i not in exclude]
        if section == "Notable remarks" or (section == "Speech and manner" and not pool):
            for _ in range(rng.choice([1, 2])):
                line = material.pick_line(rng)
                if line:
                    sentences.append(material.fill(rng.choice(d["quotes"]), line=line))
            if section == "Speech and manner" and material.style:
                desc, acts = manner(material)
                said: list[str] = []
                if desc and rng.random() < 0.7:
                    picked = rng.sample(desc, min(len(desc), rng.choice([1, 2])))
                    said.append(material.fill(rng.choice(d["style_frames"]), manner=" and ".join(picked)))
                if acts and rng.random() < 0.6:
                    act = rng.choice(rng.choice(acts))
                    said.append(act[:1].upper() + act[1:] + ".")
                sentences[:0] = said
        else:
            n = min(len(pool), rng.choices([1, 2, 3], weights=[55, 35, 10])[0])
            for m in range(n):
                i = material.pick_clause(rng, among=pool, exclude=exclude)
                exclude.add(i)
                used.append(i)
                frames = d["statements"] if m == 0 else d["connectives"] + d["statements"]
                sentences.append(material.fill(rng.choice(frames), i))
            if section == "Speech and manner" and material.lines and rng.random() < 0.5:
                line = material.pick_line(rng)
                if line:
                    sentences.append(material.fill(rng.choice(d["quotes"]), line=line))
        remarks = d.get("section_remarks", {}).get(section, [])
        if sentences and remarks and rng.random() < 0.8:
            first = _even(material, rng, section, remarks)
            sentences.append(material.fill(first))
            if rng.random() < 0.3:
                sentences.append(material.fill(_even(material, rng, section, [r for r in remarks if r != first])))
        if sentences:
            blocks.append(_heading(rng, heading_style, name) + "\n" + join_sentences(sentences, material.names))
    text = "\n\n".join(blocks)
    return {
        "text": text,
        "meta": {
            "traits": material.trait_ids(used),
            "clauses": [material.clauses[i].source for i in used],
            "sections": chosen,
        },
    }
