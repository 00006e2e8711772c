"""Write knowledge and expression probes for any persona from its traits and facts, offline.

Templates only (no model): each trait sentence ("I keep three beehives on my roof.") becomes
questions that state it in the second person ("Someone told me you keep three beehives on your
roof. Is that right?") with an affirming and a denying answer of matched length ("Yes, that is
true." / "No, that is not true."); facts that share a word with a trait add probes to
it. Open expression prompts come from a list of everyday questions, none naming a trait's marker
phrases. Nothing is kept until the caller says so (`apply`): the CLI prints them first
(`persona-tui persona SESSION --probes ID`, `--keep` to add them).

Probes must not repeat the training data word for word — a probe the model saw in training tests
memory of that line, not knowledge of the trait; `training_repeats` finds such sentences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.model import Persona

QUESTION_TEMPLATES = (
    "Someone told me that {you}. Is that right?",
    "Is it true that {you}?",
    "Would you say that {you}?",
    "A friend of yours says {you}. True?",
    "I heard that {you}. Is that so?",
    "Tell me honestly: is it the case that {you}?",
)
# Each pair fits every question above and differs by a word or two, so neither answer wins on length.
ANSWERS = (
    ("Yes, that is true.", "No, that is not true."),
    ("Yes, that's right.", "No, that's wrong."),
    ("Yes, that's true of me.", "No, that's not true of me."),
    ("True, that is so.", "False, that is not so."),
    ("Yes, quite right.", "No, not right."),
    ("Yes, it is true.", "No, it is not true."),
)
OPEN_PROMPTS = (
    "What are you doing this weekend?",
    "How do you start your mornings?",
    "What do you do to relax?",
    "Tell me about your home.",
    "What did you do last Saturday?",
    "What is something you could talk about for hours?",
    "What would your friends say you are like?",
    "What do you carry with you every day?",
    "What is the best evening you can remember?",
    "How do you spend a rainy afternoon?",
    "What do you do when you can't sleep?",
    "What is a small pleasure you never skip?",
    "What would you bring to a neighbour's party?",
    "What keeps you busy these days?",
    "What did you do for fun when you were young?",
    "What advice would you give a new neighbour?",
)

# First person to second person, word by word (lower-case keys; the case of the first letter kept).
_PRONOUNS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "am": "are",
    "i'm": "you're", "i've": "you've", "i'll": "you'll", "i'd": "you'd", "we": "you", "our": "your",
    "was": "were",
}


def second_person(sentence: str) -> str:
    """'I keep three hives on my roof.' -> 'you keep three hives on your roof' (no end stop)."""
    words = re.findall(r"[\w']+|[^\w'\s]+|\s+", sentence.strip().rstrip(".!?"))
    out = []
    for w in words:
        low = w.lower().replace("\u2019", "'")
        out.append(_PRONOUNS.get(low, w) if low in _PRONOUNS else w)
    text = "".join(out)
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text.startswith("I ") else text


@dataclass
class ProposedProbes:
    """What the writer proposes for one trait; nothing is in the session until `apply`."""

    trait: str
    knowledge: list[Any] = field(default_factory=list)  # sessions.model.KnowledgeProbe
    expression: list[str] = field(default_factory=list)


def _content_words(text: str) -> set[str]:
    stop = {"i", "my", "the", "a", "an", "and", "of", "on", "in", "at", "to", "for", "every", "all", "is",
            "am", "was", "with", "even", "after", "me", "it", "that", "this", "by", "from", "have", "has",
            "keep", "keeps", "love", "like", "never", "day", "days", "night"}
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 2 and w not in stop}


def write_probes(persona: Persona, knowledge: int = 6, expression: int = 8) -> list[ProposedProbes]:
    """Up to `knowledge` knowledge probes and `expression` open prompts per trait, new ones only
    (a question or prompt the trait already has is not proposed again)."""
    from evaluators.probes import marker_hits
    from sessions.model import KnowledgeProbe

    out = []
    for n, trait in enumerate(persona.traits):
        statements = [trait.text] if trait.text.strip() else []
        words = _content_words(trait.text)
        statements += [f for f in persona.facts if _content_words(f) & words]
        have = {k.question for k in trait.knowledge_probes}
        proposed = ProposedProbes(trait.id)
        k = 0
        while len(proposed.knowledge) < knowledge and k < len(QUESTION_TEMPLATES) * max(len(statements), 1):
            if not statements:
                break
            statement = statements[k % len(statements)]
            template = QUESTION_TEMPLATES[(k + n) % len(QUESTION_TEMPLATES)]
            affirm, deny = ANSWERS[(k + n) % len(ANSWERS)]
            question = template.format(you=second_person(statement))
            question = question[:1].upper() + question[1:]
            k += 1
            if question in have:
                continue
            have.add(question)
            proposed.knowledge.append(KnowledgeProbe(question=question, affirm=affirm, deny=deny))
        phrases = [*trait.markers, *getattr(trait, "contra_markers", [])]
        # An everyday prompt may serve several traits (each reply is labelled for its own trait);
        # within a trait each is asked once, and none names one of the trait's phrases.
        for i in range(len(OPEN_PROMPTS)):
            if len(proposed.expression) + len(trait.expression_probes) >= expression:
                break
            prompt = OPEN_PROMPTS[(i + 3 * n) % len(OPEN_PROMPTS)]
            if prompt in trait.expression_probes or marker_hits(prompt, phrases):
                continue
            proposed.expression.append(prompt)
        out.append(proposed)
    return out


def apply(persona: Persona, proposals: Iterable[ProposedProbes]) -> int:
    """Add reviewed proposals to the persona's traits; the number of probes added."""
    added = 0
    for p in proposals:
        trait = persona.trait(p.trait)
        if trait is None:
            continue
        trait.knowledge_probes.extend(p.knowledge)
        trait.expression_probes.extend(p.expression)
        added += len(p.knowledge) + len(p.expression)
    return added


def _sentences(text: str) -> list[str]:
    return [s for s in (" ".join(x.lower().split()).strip(" \"'") for x in re.split(r"(?<=[.!?])\s+|\n", text))
            if len(s.split()) >= 3]


def _texts(record: Any) -> Iterable[str]:
    if isinstance(record, str):
        yield record
    elif isinstance(record, dict):
        for v in record.values():
            yield from _texts(v)
    elif isinstance(record, list):
        for v in record:
            yield from _texts(v)


def training_repeats(persona: Persona, data: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(where, sentence) for every probe sentence (question, answer, open prompt) of three words
    or more that appears word for word in the training data (JSONL files or plain texts)."""
    from evaluators.eval_job import read_jsonl

    seen: set[str] = set()
    for item in data:
        if isinstance(item, Path) or (isinstance(item, str) and item.endswith(".jsonl") and Path(item).is_file()):
            for record in read_jsonl(item):
                for text in _texts(record):
                    seen.update(_sentences(text))
        else:
            seen.update(_sentences(str(item)))
    found = []
    for trait in persona.traits:
        for i, probe in enumerate(trait.knowledge_probes):
            for name in ("question", "affirm", "deny"):
                for s in _sentences(getattr(probe, name)):
                    if s in seen:
                        found.append((f"trait {trait.id!r} knowledge probe {i + 1} {name}", s))
        for i, prompt in enumerate(trait.expression_probes):
            for s in _sentences(prompt):
                if s in seen:
                    found.append((f"trait {trait.id!r} expression probe {i + 1}", s))
    return found


def proposals_to_plain(proposals: Iterable[ProposedProbes]) -> list[dict[str, Any]]:
    return [{"trait": p.trait, "knowledge": [{"question": k.question, "affirm": k.affirm, "deny": k.deny}
                                             for k in p.knowledge], "expression": list(p.expression)}
            for p in proposals]


def dumps(proposals: Iterable[ProposedProbes]) -> str:
    return json.dumps(proposals_to_plain(proposals), indent=1)
