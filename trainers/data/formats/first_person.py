"""first_person: the character describing themselves ("I am … I always …"), as plain text.

Record (TRL language modelling):

    {"text": "I'm Odile Marsh. I keep three beehives on my roof ... That's simply who I am.",
     "meta": {"traits": ["keeps-bees"], "clauses": ["trait:keeps-bees", "fact:3"], "shape": "paragraph"}}

The template generator writes each text in one of several shapes (a paragraph, a list, a short
letter, a confession, a habits note, an answer to "who am I?") from 1-4 of the persona's traits
and facts; the llm generator (trainers.data.generate.llm) has a teacher write them from its prompt pack.
"""

from __future__ import annotations

import random
from typing import Any

from trainers.data.generate.banks import load_bank
from trainers.data.generate.template import Material, join_sentences

NAME = "first_person"
NEEDS_PERSONA = True
# How often a habit of speech from the style field is one of the clauses a text states, against a
# trait: seldom ("I swear mildly" in a self-portrait reads as a stage direction).
STYLE_SHARE = 0.01


def _statements(
    material: Material, rng: random.Random, n: int, used: list[int], exclude: set[int], p_reflect: float = 0.6
) -> list[str]:
    b = load_bank("first_person")
    out: list[str] = []
    for k in range(n):
        i = material.pick_clause(rng, exclude=exclude)
        exclude.add(i)
        used.append(i)
        frame = rng.choice(b["statements"] if k == 0 else b["connectives"])
        out.append(material.fill(frame, i))
        if rng.random() < p_reflect:
            remarks = load_bank("chat")["remarks"].get(material.topics[i][0], [])
            out.append(rng.choice(remarks if remarks and rng.random() < 0.5 else b["reflections"]))
    return out


def _quote(material: Material, rng: random.Random) -> str:
    line = material.pick_line(rng)
    return material.fill(rng.choice(load_bank("first_person")["quotes"]), line=line) if line else ""


def build(material: Material, rng: random.Random, options: dict[str, Any]) -> dict[str, Any]:
    b = load_bank("first_person")
    s = b["shapes"]
    used: list[int] = []
    exclude: set[int] = set()
    shape = rng.choices(
        ["paragraph", "list", "letter", "confession", "habits", "answer"], weights=[40, 14, 12, 12, 10, 12]
    )[0]
    n = rng.choices([1, 2, 3, 4], weights=[30, 40, 22, 8])[0]
    habit_ids = [i for i, t in enumerate(material.topics) if "habits" in t]
    if shape == "habits" and not habit_ids:
        shape = "paragraph"
    if shape == "list":
        n = max(n, 3)
        head = rng.choice(s["list_heads"])
        items = []
        for _ in range(min(n, len(material.clauses))):
            i = material.pick_clause(rng, exclude=exclude)
            exclude.add(i)
            used.append(i)
            items.append(material.fill("- {First}.", i))
        tail = rng.choice(b["closers"])
        text = head + "\n" + "\n".join(items) + (f"\n{tail}" if tail else "")
    elif shape == "letter":
        parts = [rng.choice(s["letter_bodies"]), *_statements(material, rng, n, used, exclude)]
        if rng.random() < 0.3:
            parts.append(_quote(material, rng))
        body = join_sentences(parts, material.names)
        text = f"{rng.choice(s['letter_heads'])}\n\n{body}\n\n{material.fill(rng.choice(s['letter_signoffs']))}"
    elif shape == "habits":
        i = material.pick_clause(rng, among=habit_ids)
        exclude.add(i)
        used.append(i)
        parts = [material.fill(rng.choice(b["intros"])), material.fill(rng.choice(s["habit_frames"]), i)]
        if rng.random() < 0.5:
            parts.append(rng.choice(b["reflections"]))
        for _ in range(n - 1):
            j = material.pick_clause(rng, exclude=exclude)
            exclude.add(j)
            used.append(j)
            parts.append(material.fill(rng.choice(b["connectives"]), j))
        parts.append(rng.choice(b["closers"]))
        text = join_sentences(parts, material.names)
    else:
        head = {
            "paragraph": material.fill(rng.choice(b["intros"])),
            "confession": rng.choice(s["confession_heads"]),
            "answer": rng.choice(s["answer_heads"]),
        }[shape]
        parts = [head, *_statements(material, rng, n, used, exclude)]
        if rng.random() < 0.3:
            parts.append(_quote(material, rng))
        parts.append(rng.choice(b["closers"]))
        text = join_sentences(parts, material.names)
    return {
        "text": text,
        "meta": {
            "traits": material.trait_ids(used),
            "clauses": [material.clauses[i].source for i in used],
            "shape": shape,
        },
    }
