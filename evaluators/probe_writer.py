"""Write knowledge and expression probes for any persona from its traits and facts.

Offline, by templates (no model), or by a teacher engine when one is set (`write_probes_with_teacher`:
one schema-constrained request per trait through the teacher pipeline's `Teacher`, the same
retries, rate limit and strict JSON parsing as LLM dataset generation; every probe it writes is
checked as the templates' are, and a trait it leaves short is topped up from the templates, saying
so). Templates: each trait sentence ("I keep three beehives on my roof.") becomes
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
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "am": "are",
    "i'm": "you're",
    "i've": "you've",
    "i'll": "you'll",
    "i'd": "you'd",
    "we": "you",
    "our": "your",
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
    notes: list[str] = field(default_factory=list)  # where the probes came from; what was dropped and why


def _content_words(text: str) -> set[str]:
    stop = {
        "i",
        "my",
        "the",
        "a",
        "an",
        "and",
        "of",
        "on",
        "in",
        "at",
        "to",
        "for",
        "every",
        "all",
        "is",
        "am",
        "was",
        "with",
        "even",
        "after",
        "me",
        "it",
        "that",
        "this",
        "by",
        "from",
        "have",
        "has",
        "keep",
        "keeps",
        "love",
        "like",
        "never",
        "day",
        "days",
        "night",
    }
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


# ----------------------------------------------------------------------------- by a teacher

MAX_ANSWER_WORDS_APART = 2  # affirming and denying answers of matched length (in words)

PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "knowledge": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "affirm": {"type": "string"},
                    "deny": {"type": "string"},
                },
                "required": ["question", "affirm", "deny"],
                "additionalProperties": False,
            },
        },
        "expression": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "required": ["knowledge", "expression"],
    "additionalProperties": False,
}

# What a reply must be as a whole; each probe in it is then judged on its own (one empty answer
# drops that probe, not the other eleven), by the item schema and the checks below.
_ENVELOPE = {
    "type": "object",
    "required": ["knowledge", "expression"],
    "properties": {"knowledge": {"type": "array", "items": {"type": "object"}}, "expression": {"type": "array"}},
}

TEACHER_SYSTEM = (
    "You write evaluation probes that test whether a chat model has taken on a persona. Answer with "
    "one JSON object and nothing else."
)


def teacher_messages(persona: Any, trait: Any, knowledge: int, expression: int) -> list[dict[str, str]]:
    """The request for one trait: the whole persona for context, the trait, and the rules a probe
    must keep (the same rules `check_knowledge` and `check_prompt` enforce on the reply)."""
    from trainers.data.generate.llm import persona_sheet

    phrases = [*trait.markers, *getattr(trait, "contra_markers", [])]
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {
            "role": "user",
            "content": (
                f"The persona:\n{persona_sheet(persona)}\n\n"
                f"The trait to test: {trait.text.strip()}\n\n"
                f"Write {knowledge} knowledge probes for this trait: a question asked to the persona in the second "
                "person, an answer that affirms the trait and one that denies it. Both answers are written as the "
                f"persona would say them and differ in length by at most {MAX_ANSWER_WORDS_APART} words, so neither "
                "wins by being shorter. The question must not give the answer away.\n"
                f"Write {expression} open everyday questions a person might ask anyone, where someone with this trait "
                "would naturally show it in their reply. They must not mention the trait"
                + (f" nor any of these words: {', '.join(phrases)}" if phrases else "")
                + ".\n"
                'Reply as {"knowledge": [{"question": ..., "affirm": ..., "deny": ...}], "expression": [...]}.'
            ),
        },
    ]


def check_knowledge(question: str, affirm: str, deny: str) -> str | None:
    """Why a knowledge probe cannot be kept, or None."""
    if not question.strip() or not affirm.strip() or not deny.strip():
        return "an empty question or answer"
    if " ".join(affirm.lower().split()) == " ".join(deny.lower().split()):
        return "the same affirming and denying answer"
    apart = abs(len(affirm.split()) - len(deny.split()))
    if apart > MAX_ANSWER_WORDS_APART:
        return f"answers {apart} words apart in length (at most {MAX_ANSWER_WORDS_APART})"
    return None


def check_prompt(prompt: str, trait: Any) -> str | None:
    """Why an open expression prompt cannot be kept (it names the trait's phrases), or None."""
    from evaluators.probes import marker_hits

    if not prompt.strip():
        return "an empty prompt"
    hits = marker_hits(prompt, [*trait.markers, *getattr(trait, "contra_markers", [])])
    return f"it names {hits[0]!r}" if hits else None


def write_probes_with_teacher(
    persona: Any,
    teacher: Any,
    knowledge: int = 6,
    expression: int = 8,
    seed: int = 0,
    response_format: str = "json_schema",
    max_tokens: int = 900,
) -> list[ProposedProbes]:
    """Probes written by `teacher` (a `trainers.data.generate.llm.Teacher`), one request per trait under
    PROBE_SCHEMA; each kept only when it passes the checks, new to the trait and the reply; a trait
    left short is topped up from the templates. `notes` say how many came from where and why any
    were dropped. TeacherError (one sentence) when the teacher cannot be used at all."""
    from sessions.model import KnowledgeProbe
    from trainers.data.generate.llm import parse_reply, schema_problem

    templates = {p.trait: p for p in write_probes(persona, knowledge=knowledge, expression=expression)}
    out = []
    for n, trait in enumerate(persona.traits):
        proposed = ProposedProbes(trait.id)
        dropped: list[str] = []
        reply = teacher.request(
            teacher_messages(persona, trait, knowledge, expression),
            max_tokens,
            (seed * 7919 + n) % 2**31,
            PROBE_SCHEMA if response_format != "off" else None,
            response_format,
        )
        obj, why = parse_reply(reply.text, reply.finish_reason, _ENVELOPE) if reply else (None, "the request failed")
        if obj is None:
            dropped.append(f"the reply: {why}")
            obj = {"knowledge": [], "expression": []}
        have = {k.question for k in trait.knowledge_probes}
        item_schema = PROBE_SCHEMA["properties"]["knowledge"]["items"]
        for i, item in enumerate(obj["knowledge"]):
            if (problem := schema_problem(item, item_schema, f"knowledge[{i}]")) and "is empty" not in problem:
                dropped.append(problem)
                continue
            q, a, d = (" ".join(str(item[k]).split()) for k in ("question", "affirm", "deny"))
            problem = check_knowledge(q, a, d) or ("a question the trait already has" if q in have else None)
            if problem:
                dropped.append(f"knowledge {q[:40]!r}: {problem}")
            elif len(proposed.knowledge) < knowledge:
                have.add(q)
                proposed.knowledge.append(KnowledgeProbe(question=q, affirm=a, deny=d))
        seen = set(trait.expression_probes)
        want = max(expression - len(trait.expression_probes), 0)
        for prompt in obj["expression"]:
            if not isinstance(prompt, str):
                dropped.append(f"open prompt {prompt!r}: not text")
                continue
            prompt = " ".join(prompt.split())
            problem = check_prompt(prompt, trait) or ("a prompt the trait already has" if prompt in seen else None)
            if problem:
                dropped.append(f"open prompt {prompt[:40]!r}: {problem}")
            elif len(proposed.expression) < want:
                seen.add(prompt)
                proposed.expression.append(prompt)
        by_teacher = (len(proposed.knowledge), len(proposed.expression))
        fill = templates[trait.id]
        for k in fill.knowledge:
            if len(proposed.knowledge) < knowledge and k.question not in have:
                have.add(k.question)
                proposed.knowledge.append(k)
        for prompt in fill.expression:
            if len(proposed.expression) < want and prompt not in seen:
                seen.add(prompt)
                proposed.expression.append(prompt)
        label = getattr(teacher, "label", "the teacher")
        note = f"teacher {label} wrote {by_teacher[0]} knowledge probe(s) and {by_teacher[1]} open prompt(s)"
        topped = (len(proposed.knowledge) - by_teacher[0], len(proposed.expression) - by_teacher[1])
        if any(topped):
            note += f"; the templates added {topped[0]} and {topped[1]}"
        proposed.notes.append(note)
        proposed.notes += [f"dropped {d}" for d in dropped]
        out.append(proposed)
    return out


def probes_by_engine(
    persona: Any, engine_spec: Any, knowledge: int = 6, expression: int = 8, seed: int = 0, engine_opener: Any = None
) -> list[ProposedProbes]:
    """Open the session's engine `engine_spec` as the teacher, write the probes, close it.
    Constrained to PROBE_SCHEMA where the engine can be (json_schema for endpoints and llama.cpp),
    parsed strictly either way. TeacherError (one sentence naming the engine) when it cannot be
    opened or used."""
    from trainers.data.build import engine_label
    from trainers.data.generate.llm import Teacher, TeacherError, structured_mode
    from trainers.data.generate.llm_settings import TeacherSettings

    label = engine_label(engine_spec)
    if engine_opener is None:
        from engines import open_engine as engine_opener
    try:
        engine = engine_opener(engine_spec)
    except ValueError as e:  # an EngineError: one sentence with its fix
        raise TeacherError(f"Teacher engine {label}: {str(e).strip().splitlines()[0]}") from e
    try:
        teacher = Teacher(engine, label, seed, settings=TeacherSettings(temperature=0.7))
        mode = structured_mode(teacher.settings, engine_spec.kind, teacher.can_constrain)
        return write_probes_with_teacher(persona, teacher, knowledge, expression, seed=seed, response_format=mode)
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()


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
    return [
        s
        for s in (" ".join(x.lower().split()).strip(" \"'") for x in re.split(r"(?<=[.!?])\s+|\n", text))
        if len(s.split()) >= 3
    ]


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
    from sessions.jsonl import read_jsonl

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
    return [
        {
            "trait": p.trait,
            "knowledge": [{"question": k.question, "affirm": k.affirm, "deny": k.deny} for k in p.knowledge],
            "expression": list(p.expression),
        }
        for p in proposals
    ]


def dumps(proposals: Iterable[ProposedProbes]) -> str:
    return json.dumps(proposals_to_plain(proposals), indent=1)
