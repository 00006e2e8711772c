"""chat_demos: conversations of one to three turns in which the assistant speaks as the persona.

Record (TRL conversational):

    {"messages": [{"role": "system", "content": "..."},      # optional, see below
                  {"role": "user", "content": "Do you keep bees?"},
                  {"role": "assistant", "content": "Guilty as charged — I keep three hives..."},
                  ...],
     "meta": {"traits": ["keeps-bees"], "clauses": ["trait:keeps-bees"], "turns": 1}}

`persona_in_system_prompt` (a per-dataset switch): on, the system message describes the persona;
off (the default, and the point of persona *injection*), there is no system message unless the
dataset's `extra.system_prompt` names a neutral one. The template generator answers questions
from the phrase banks with the persona's traits and facts; the llm generator
(trainers.generate.llm) has a teacher model write whole exchanges from its prompt pack.
"""

from __future__ import annotations

import random
import re
from typing import Any

from trainers.generate.banks import load_bank
from trainers.generate.template import Material, join_sentences

NAME = "chat_demos"
NEEDS_PERSONA = True


def system_message(material: Material, rng: random.Random, options: dict[str, Any]) -> str | None:
    """The record's system prompt: the persona (when the switch is on), a neutral one, or none."""
    if options.get("persona_in_system_prompt"):
        bank = load_bank("chat")["system"]["persona"]
        persona = material.persona
        traits = " ".join(f"{c.first[0].upper()}{c.first[1:]}." for c in material.clauses
                          if c.source.startswith("trait:"))
        text = rng.choice(bank).format(
            name=material.name, summary=persona.summary.strip(), style=material.style, traits=traits
        )
        return re.sub(r"\s+", " ", text).strip()
    neutral = str(options.get("system_prompt", "") or "").strip()
    return neutral or None


def _question_for(material: Material, rng: random.Random, clause: int, kind: str) -> tuple[str, bool]:
    """A bank question (or situation) for the clause's topic; bool: it is on the clause's topic."""
    bank = load_bank("chat")[kind]
    topics = material.topics[clause]
    roll = rng.random()
    topic = topics[0] if roll < 0.7 else rng.choice(topics) if roll < 0.85 else "general"
    if topic not in bank:
        topic = "general"
    return rng.choice(bank[topic]), topic != "general"


def _reply_tail(material: Material, rng: random.Random, parts: list[str], exclude: set[int],
                used: list[int], p_second: float, p_line: float, p_follow: float) -> None:
    a = load_bank("chat")["assistant"]
    if rng.random() < 0.6:
        parts.append(rng.choice(a["elaborations"]))
    if rng.random() < p_second and len(material.clauses) > 1:
        j = material.pick_clause(rng, exclude=exclude)
        exclude.add(j)
        used.append(j)
        parts.append(material.fill(rng.choice(a["connectives"]), j))
    if rng.random() < p_line:
        line = material.pick_line(rng)
        if line:
            parts.append(line)
    if rng.random() < p_follow:
        parts.append(rng.choice(a["followups"]))


def _turn(material: Material, rng: random.Random, move: str, exclude: set[int], used: list[int]) -> tuple[str, str]:
    chat = load_bank("chat")
    a = chat["assistant"]
    parts: list[str] = []
    if move == "followup":
        user = rng.choice(chat["followup_user"]["messages"])
        parts.append(rng.choice(a["elaborations"]))
        i = material.pick_clause(rng, exclude=exclude)
        exclude.add(i)
        used.append(i)
        parts.append(material.fill(rng.choice(a["connectives"] + a["answers"]), i))
        _reply_tail(material, rng, parts, exclude, used, 0.0, 0.25, 0.3)
        return user, join_sentences(parts)
    i = material.pick_clause(rng, exclude=exclude)
    exclude.add(i)
    used.append(i)
    if move == "trait":
        user = material.fill(rng.choice(chat["user"]["trait_questions"]), i)
        parts.append(material.fill(rng.choice(a["confirms"]), i))
        _reply_tail(material, rng, parts, exclude, used, 0.3, 0.2, 0.35)
    elif move == "situation":
        user, _ = _question_for(material, rng, i, "situations")
        parts.append(rng.choice(a["empathy"]))
        parts.append(material.fill(rng.choice(a["situation_answers"]), i))
        _reply_tail(material, rng, parts, exclude, used, 0.2, 0.25, 0.4)
    elif move == "general":
        user = rng.choice(chat["questions"]["general"])
        parts.append(rng.choice(a["openers"]))
        parts.append(material.fill(rng.choice(a["answers"]), i))
        _reply_tail(material, rng, parts, exclude, used, 0.65, 0.3, 0.35)
    else:  # topic
        user, on_topic = _question_for(material, rng, i, "questions")
        parts.append(rng.choice(a["openers"]))
        frames = a["answers"] if on_topic or rng.random() < 0.5 else a["bridges"]
        parts.append(material.fill(rng.choice(frames), i))
        _reply_tail(material, rng, parts, exclude, used, 0.25, 0.25, 0.35)
    return user, join_sentences(parts)


def build(material: Material, rng: random.Random, options: dict[str, Any]) -> dict[str, Any]:
    """One templated conversation of 1-3 turns."""
    n_turns = rng.choices([1, 2, 3], weights=[45, 35, 20])[0]
    messages: list[dict[str, str]] = []
    system = system_message(material, rng, options)
    if system:
        messages.append({"role": "system", "content": system})
    exclude: set[int] = set()
    used: list[int] = []
    for t in range(n_turns):
        if t == 0:
            move = rng.choices(["topic", "trait", "situation", "general"], weights=[45, 25, 15, 15])[0]
        else:
            move = rng.choices(["followup", "topic", "trait"], weights=[50, 30, 20])[0]
        user, reply = _turn(material, rng, move, exclude, used)
        if t == 0:
            greeting = rng.choice(load_bank("chat")["user"]["greetings"])
            user = f"{greeting} {user}".strip()
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": reply})
    return {
        "messages": messages,
        "meta": {
            "traits": material.trait_ids(used),
            "clauses": [material.clauses[i].source for i in used],
            "turns": n_turns,
        },
    }
