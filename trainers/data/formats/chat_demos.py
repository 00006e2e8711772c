"""chat_demos: conversations of one to three turns in which the assistant speaks as the persona.

Record (TRL conversational):

    {"messages": [{"role": "system", "content": "..."},      # optional, see below
                  {"role": "user", "content": "Do you keep bees?"},
                  {"role": "assistant", "content": "Yes, I keep three hives..."},
                  ...],
     "meta": {"traits": ["keeps-bees"], "clauses": ["trait:keeps-bees"], "turns": 1}}

`persona_in_system_prompt` (a per-dataset switch): on, the system message describes the persona;
off (the default, and the point of persona *injection*), there is no system message unless the
dataset's `extra.system_prompt` names a neutral one. The template generator answers questions
from the phrase banks with the persona's traits and facts; the llm generator
(trainers.data.generate.llm) has a teacher model write whole exchanges from its prompt pack.
"""

from __future__ import annotations

import random
import re
from typing import Any

from trainers.data.generate.banks import load_bank
from trainers.data.generate.template import Material, join_sentences

NAME = "chat_demos"
NEEDS_PERSONA = True
# The most examples one of the persona's example lines may be quoted in, as a share of the size:
# a line quoted in reply after reply becomes the data's stock sentence.
LINE_SHARE = 0.03
# How often a habit of speech from the style field ("I call everyone 'mate'") is the clause a
# reply says outright, against a trait: rarely, mostly when the user asks how the persona talks.
STYLE_SHARE = 0.03


def system_message(material: Material, rng: random.Random, options: dict[str, Any]) -> str | None:
    """The record's system prompt: the persona (when the switch is on), a neutral one, or none."""
    if options.get("persona_in_system_prompt"):
        bank = load_bank("chat")["system"]["persona"]
        persona = material.persona
        traits = " ".join(
            f"{c.first[0].upper()}{c.first[1:]}." for c in material.clauses if c.source.startswith("trait:")
        )
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


def _fits(stem: str, text: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(stem)}(?:s|es)?(?![a-z'])", text) is not None


_ASKS_CACHE: dict[tuple[str, ...], list[str]] = {}


def questions_for(material: Material, clause: int) -> list[str]:
    """The questions that ask about this clause: keyed `asks` whose stems it contains, and the
    open questions of its main topic. Empty when none fits (the clause is then asked about
    directly, "Is it true that you ...?")."""
    c = material.clauses[clause]
    key = (c.first, material.topics[clause][0])
    if key not in _ASKS_CACHE:
        chat = load_bank("chat")
        low = c.first.lower()
        if low.startswith("my "):
            # About someone else ("my late husband ... was an engineer"): a question fits through
            # who it is about, not through what they do ("What do you do for a living?").
            low = " ".join(low.split()[:3])  # "my daughter ines", not "... studies" (her research)
        # A habit of speech ("I use medical shorthand and football metaphors") answers questions
        # about how the persona talks, never one about what its words name ("Do you play any sport?").
        keyed = (
            []
            if c.source == "style"
            else [q for q, stems in chat["asks"].items() if any(_fits(st, low) for st in stems)]
        )
        topic = material.topics[clause][0]
        # (An open question that is also keyed asks about that key, so it is not open.)
        opened = [q for q in chat["open"].get(topic, []) if q not in chat["asks"]] if topic != "general" else []
        _ASKS_CACHE[key] = keyed or opened  # a question about this very thing, else the topic
    return _ASKS_CACHE[key]


def _reply_tail(
    material: Material, rng: random.Random, parts: list[str], clause: int, p_more: float, p_line: float, p_follow: float
) -> None:
    """After the answer: a feeling, the persona's own words on the same topic, a question back."""
    chat = load_bank("chat")
    a = chat["assistant"]
    if rng.random() < p_more:
        remarks = chat["remarks"].get(material.topics[clause][0], [])
        parts.append(rng.choice(remarks if remarks and rng.random() < 0.75 else a["elaborations"]))
        if remarks and rng.random() < 0.35:
            # People say a little more about what they care about: a second remark, on topic.
            more = [r for r in remarks if r != parts[-1]]
            parts.append(rng.choice(more))
    if rng.random() < p_line:
        line = material.line_on(rng, material.topics[clause][0])
        if line:
            parts.append(line)
    if rng.random() < p_follow:
        parts.append(rng.choice(a["followups"]))


def _also(
    material: Material,
    rng: random.Random,
    question: str,
    clause: int,
    exclude: set[int],
    used: list[int],
    parts: list[str],
) -> None:
    """A second clause that answers the same question (\"Tell me about your family\": two relatives)."""
    others = [
        j
        for j in range(len(material.clauses))
        if j not in exclude
        and material.clauses[j].source != "summary"
        and question in questions_for(material, j)
        and material.clauses[j].first.lower()[:20] != material.clauses[clause].first.lower()[:20]
    ]
    if others:
        j = rng.choice(others)
        exclude.add(j)
        used.append(j)
        material.usage[j] += 1
        parts.append(material.fill(rng.choice(load_bank("chat")["assistant"]["connectives"]), j))


_ECHO = [
    (r"\bare you\b", "am I"),
    (r"\bwere you\b", "was I"),
    (r"\bdo you\b", "do I"),
    (r"\bdid you\b", "did I"),
    (r"\bhave you\b", "have I"),
    (r"\bcan you\b", "can I"),
    (r"\bwould you\b", "would I"),
    (r"\byou're\b", "I'm"),
    (r"\byourself\b", "myself"),
    (r"\byours\b", "mine"),
    (r"\byour\b", "my"),
    (r"\b(to|for|with|about|at|from|of|like|around|without|near|[a-z]+s) you\b", r"\1 me"),
    (r"\byou\b", "I"),
]


def echo(question: str) -> str | None:
    """The question asked back in the first person ("Where do I live?"), as people do before
    answering; None for requests ("Tell me about ...") and anything that is not a question."""
    q = question.strip()
    if not q.endswith("?") or q.lower().startswith(("tell ", "is it true", "so ")):
        return None
    out = q
    for pat, rep in _ECHO:
        out = re.sub(pat, rep, out, flags=re.I)
    if out == q:
        return None  # nothing about "you" to turn round ("Cat person or dog person?"): a parrot, not an echo
    return out[:1].upper() + out[1:]


def _turn(material: Material, rng: random.Random, move: str, exclude: set[int], used: list[int]) -> tuple[str, str]:
    chat = load_bank("chat")
    a = chat["assistant"]
    parts: list[str] = []
    i = material.pick_clause(rng, exclude=exclude)
    exclude.add(i)
    used.append(i)
    asks = questions_for(material, i)
    if move == "ask" and not asks:
        move = "trait"
    elif move == "ask" and asks[0] not in chat["asks"] and rng.random() < 0.75:
        # Only its topic's open questions fit ("What kind of person are you?" for "I give
        # directions by compass points"): an answer to so wide a question reads as a non sequitur,
        # so the user mostly asks about the thing itself.
        move = "trait"
    if move == "trait":
        user = material.fill(rng.choice(chat["user"]["trait_questions"]), i)
        asked = material.variants[i][material.drawn[-1][1]].first if material.variants else material.clauses[i].first
        # The confirmation says again what the user asked about (not the other half of a split
        # clause), briefly if it can.
        material.wants = lambda w: w.first in asked or asked in w.first
        parts.append(material.fill(rng.choice(a["confirms"]), i))
        material.wants = None
        _reply_tail(material, rng, parts, i, 0.85, 0.2, 0.3)
    elif move == "situation":
        user, _ = _question_for(material, rng, i, "situations")
        parts.append(rng.choice(a["empathy"]))
        parts.append(material.fill(rng.choice(a["situation_answers"]), i))
        _reply_tail(material, rng, parts, i, 0.2, 0.2, 0.35)
    elif move == "general":
        user = rng.choice(chat["open"]["general"])
        parts.append(rng.choice(a["openers"]))
        plain = parts[-1] and rng.random() < 0.5
        parts.append(material.fill("{First}." if plain else rng.choice(a["answers"]), i))
        _reply_tail(material, rng, parts, i, 0.5, 0.25, 0.3)
    else:  # ask: a question about this very clause
        user = rng.choice(asks)
        back = echo(user)
        if back and rng.random() < 0.55:
            parts.append(rng.choice(a["echo_frames"]).format(echo=back, echo_lower=back[:1].lower() + back[1:]))
        else:
            parts.append(rng.choice(a["openers"]))
        stems = chat["asks"].get(user, [])
        material.wants = (lambda w: any(_fits(st, w.first.lower()) for st in stems)) if stems else None
        # After an opener or the question asked back, the answer mostly comes plainly: two
        # framing phrases in a row ("Ha, well. To tell you the truth, ...") read as padding.
        plain = parts[-1] and rng.random() < 0.5
        parts.append(material.fill("{First}." if plain else rng.choice(a["answers"]), i))
        material.wants = None
        if rng.random() < 0.15:
            _also(material, rng, user, i, exclude, used, parts)
        _reply_tail(material, rng, parts, i, 0.85, 0.15, 0.3)
    return user, join_sentences(parts, material.names)


def build(material: Material, rng: random.Random, options: dict[str, Any]) -> dict[str, Any]:
    """One templated conversation of 1-3 turns; each reply answers the question it follows."""
    n_turns = rng.choices([1, 2, 3], weights=[45, 35, 20])[0]
    messages: list[dict[str, str]] = []
    system = system_message(material, rng, options)
    if system:
        messages.append({"role": "system", "content": system})
    exclude: set[int] = set()
    used: list[int] = []
    chat = load_bank("chat")
    for t in range(n_turns):
        if t == 0:
            # (No "situation" moves: a reply to "I've had a long week" with a fact does not answer it.)
            move = rng.choices(["ask", "trait", "general"], weights=[82, 15, 3])[0]
        else:
            move = rng.choices(["ask", "trait"], weights=[80, 20])[0]
        user, reply = _turn(material, rng, move, exclude, used)
        lead = rng.choice(chat["user"]["greetings"] if t == 0 else chat["ack"]["user"])
        user = f"{lead} {user}".strip()
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
