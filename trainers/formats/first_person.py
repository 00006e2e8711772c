"""first_person: the character describing themselves ("I am … I always …"), as plain text.

Record (TRL language modelling):

    {"text": "I'm Odile Marsh. I keep three beehives on my roof ... That's simply who I am.",
     "meta": {"traits": ["keeps-bees"], "clauses": ["trait:keeps-bees", "fact:3"], "shape": "paragraph"}}

The template generator writes each text in one of several shapes (a paragraph, a list, a short
letter, a confession, a habits note, an answer to "who am I?") from 1-4 of the persona's traits
and facts; the llm generator asks a teacher for a short first-person paragraph about one trait.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from trainers.generate.banks import load_bank
from trainers.generate.template import Material, join_sentences
from trainers.generate.voice import lower_first

NAME = "first_person"
NEEDS_PERSONA = True


def _statements(material: Material, rng: random.Random, n: int, used: list[int], exclude: set[int],
                p_reflect: float = 0.6) -> list[str]:
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
    shape = rng.choices(["paragraph", "list", "letter", "confession", "habits", "answer"],
                        weights=[40, 14, 12, 12, 10, 12])[0]
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
        body = join_sentences(parts)
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
        text = join_sentences(parts)
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
        text = join_sentences(parts)
    return {"text": text, "meta": {"traits": material.trait_ids(used),
                                   "clauses": [material.clauses[i].source for i in used], "shape": shape}}


# --- llm generator ------------------------------------------------------------------------------

_PREAMBLE = re.compile(r"^\s*(sure|okay|ok|here is|here's|certainly|of course)\b[^\n]*?(:|\n|!)\s*", re.I)


def clean_paragraph(reply: str, min_words: int = 8, max_sentences: int = 6) -> str | None:
    """A first-person paragraph from a teacher's reply, or None when there is none."""
    if not isinstance(reply, str):
        return None
    text = _PREAMBLE.sub("", reply.replace("\r", "").strip(), count=1)
    text = re.sub(r"^\s*#+[^\n]*\n", "", text)  # a heading line
    text = re.sub(r"\s+", " ", text).strip().strip('"“”').strip()
    words = re.findall(r"[A-Za-z']+", text)
    if len(words) < min_words:
        return None
    low = [w.lower() for w in words]
    if not any(w in ("i", "i'm", "i've", "my", "me", "i'd", "i'll") for w in low):
        return None
    if len(words) >= 12 and len(set(low)) / len(low) < 0.35:
        return None
    if "as an ai" in text.lower() or "language model" in text.lower():
        return None
    sentences = re.split(r"(?<=[.!?])\s+", text)[:max_sentences]
    text = " ".join(sentences)
    if text[-1] not in ".!?\"')":
        whole = re.match(r"^(.*[.!?])", text)
        if not whole or len(re.findall(r"[A-Za-z']+", whole.group(1))) < min_words:
            return None
        text = whole.group(1)
    return text


def llm_build(material: Material, rng: random.Random, options: dict[str, Any],
              ask: Callable[[list[dict[str, str]], int], str]) -> dict[str, Any] | None:
    from trainers.formats.chat_demos import teacher_system

    i = material.pick_clause(rng)
    clause = material.clauses[i]
    angle = rng.choice([
        "why it matters to you", "how it shows in an ordinary day", "what people make of it",
        "how it started", "a small moment when it showed", "how you feel about it",
    ])
    prompt = (
        f"In the first person, as {material.name}, write three or four sentences about yourself. "
        f"Start with \"I\". Mention that {lower_first(clause.first)}, and say {angle}."
    )
    reply = ask([{"role": "system", "content": teacher_system(material)}, {"role": "user", "content": prompt}], 160)
    text = clean_paragraph(reply)
    if text is None:
        return None
    return {"text": text, "meta": {"traits": material.trait_ids([i]), "clauses": [clause.source], "generator": "llm"}}
