"""tailoring_sft / tailoring_dpo: preference pairs turned into persona-tailored examples.

Following Balepur et al., "Whose Boat Does it Float? Improving Personalization in Preference
Tuning via Inferred User Personas": a pair (`prompt`, `chosen`, `rejected`) says which response
some user preferred; a *persona* says who that user is, and the model learns to tailor its
response to the persona given in the prompt, with the paper's template

    Prompt: [prompt]
    Persona: [persona]
    Response:

Records:

    tailoring_sft: {"prompt": "Prompt: …\\nPersona: …\\nResponse:", "completion": " <chosen>",
                    "meta": {"row": 12, "chosen_persona": "…", "rejected_persona": "…",
                             "persona_source": "gold", "side": "chosen"}}
    tailoring_dpo: {"prompt": "Prompt: …\\nPersona: <chosen persona>\\nResponse:",
                    "chosen": " <chosen>", "rejected": " <rejected>", "meta": {…}}

Input: JSONL or CSV with `prompt`, `chosen`, `rejected` and optionally `chosen_persona_gold`,
`rejected_persona_gold`, `chosen_persona_retr`, `rejected_persona_retr`. Personas
(`extra.persona_source`): `gold`, `retr`, `infer`, `none` (no persona line: the baseline trained
without personas), or `auto` (default: gold when the row has
both, else retrieved, else inferred). **Persona inference** asks an engine for the persona of a
user who would prefer the chosen response and, swapped, of one who would prefer the rejected one;
the inferred personas are stored in the record's meta beside the pair. `extra.both_sides` adds
the mirrored example (the rejected response as the one preferred by the rejected persona).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.data.formats.rows import BrokenRows, ImportFileError, table_records

NAME = "tailoring"
NEEDS_PERSONA = False
KINDS = ("sft", "dpo")
PERSONA_SOURCES = ("auto", "gold", "retr", "infer", "none")
REQUIRED = ("prompt", "chosen", "rejected")

Infer = Callable[[str, str, str], "str | None"]


def template(prompt: str, persona: str) -> str:
    """The paper's prompt template (without the persona line when there is none: the paper's
    no-persona baseline)."""
    if not persona.strip():
        return f"Prompt: {prompt.strip()}\nResponse:"
    return f"Prompt: {prompt.strip()}\nPersona: {persona.strip()}\nResponse:"


# Two worked examples (written for this project) show even a small model the shape of an answer.
_FEW_SHOT = (
    (
        "Recommend a way to learn the word 'gregarious'.",
        "Picture a flock of geese honking together: 'greg' sounds like the geese's group, and a "
        "gregarious person loves being in a group.",
        "Gregarious comes from the Latin 'grex', meaning flock; it describes a sociable person.",
        "The user is a visual learner who remembers words through vivid, funny mental pictures.",
    ),
    (
        "How should I start running?",
        "Begin with three short runs a week, alternating one minute of running with two of walking, "
        "and add a minute each week.",
        "Just get out there and run as far as you can every day; your body will adapt.",
        "The user is a careful beginner who wants a gradual, structured plan rather than a challenge.",
    ),
)


def _pair_message(prompt: str, preferred: str, other: str) -> str:
    return (
        f"Prompt: {prompt.strip()}\nResponse A: {preferred.strip()}\nResponse B: {other.strip()}\n"
        'Describe, in one sentence starting with "The user is", the kind of person who would '
        "prefer Response A."
    )


def inference_messages(prompt: str, preferred: str, other: str) -> list[dict[str, str]]:
    """The chat sent to the engine to infer who would prefer `preferred` over `other` (few-shot)."""
    messages = [{"role": "system", "content": "You describe users from the answers they prefer, in one sentence."}]
    for p, a, b, persona in _FEW_SHOT:
        messages += [{"role": "user", "content": _pair_message(p, a, b)}, {"role": "assistant", "content": persona}]
    messages.append({"role": "user", "content": _pair_message(prompt, preferred, other)})
    return messages


def parse_persona(reply: Any) -> str | None:
    """One persona sentence from the engine's reply, or None when there is none usable.

    A sentence about the responses rather than the user ("The user prefers Response B") is not a
    persona; a trailing "who prefers Response A" is cut off a description that has more to say.
    """
    if not isinstance(reply, str):
        return None
    text = re.sub(r"\s+", " ", reply.replace("\r", " ")).strip().strip('"“”').strip()
    if not text:
        return None
    m = re.search(
        r"\b(the user (?:is|prefers|likes|values|would|seems|tends|enjoys)\b.*?)(?:[.!?](?:\s|$)|$)", text, re.I
    )
    if m:
        sentence = m.group(1).strip()
    else:
        first = re.split(r"(?<=[.!?])\s+", text)[0].strip()
        if re.match(r"^(response|a:|b:|sure|here|okay|i )", first, re.I):
            return None
        sentence = first.rstrip(".!?")
    sentence = re.sub(
        r",?\s*(?:and |who |which |that )?(?:would )?(?:prefers?|preferred|likes?|chose|chooses)\s+"
        r"(?:the )?response [ab]\b.*$",
        "",
        sentence,
        flags=re.I,
    )
    sentence = sentence.rstrip(".!?,;: ")
    if re.search(r"\bresponse [ab]\b|the user is\"", sentence, re.I):
        return None
    words = re.findall(r"[A-Za-z']+", sentence)
    if len(words) < 5 or len(words) > 80:
        return None
    if len(set(w.lower() for w in words)) / len(words) < 0.4:
        return None  # a loop
    sentence = sentence[0].upper() + sentence[1:]
    return sentence + "."


def _persona_pair(row: dict[str, Any], source: str) -> tuple[str, str, str] | None:
    """(chosen persona, rejected persona, where from) from the row's columns, or None."""

    def get(k: str) -> str:
        v = row.get(k)
        return v.strip() if isinstance(v, str) else ""

    gold = (get("chosen_persona_gold"), get("rejected_persona_gold"))
    retr = (get("chosen_persona_retr"), get("rejected_persona_retr"))
    if source in ("auto", "gold") and all(gold):
        return gold[0], gold[1], "gold"
    if source in ("auto", "retr") and all(retr):
        return retr[0], retr[1], "retr"
    return None


def build_examples(
    path: Path,
    kind: str,
    persona_source: str = "auto",
    both_sides: bool = False,
    strict: bool = False,
    infer: Infer | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records of `kind` ("sft" or "dpo") from the file, and the counts of what happened."""
    if kind not in KINDS:
        raise ValueError(f"tailoring kind {kind!r} is unknown; use 'sft' or 'dpo'.")
    persona_source = persona_source or "auto"
    if persona_source not in PERSONA_SOURCES:
        raise ImportFileError(f"persona_source {persona_source!r} is unknown; use one of {', '.join(PERSONA_SOURCES)}.")
    broken = BrokenRows(path, strict)
    counts: Counter = Counter()
    rows: list[tuple[int, dict[str, Any]]] = []
    for line, row in table_records(path, REQUIRED, broken):
        counts["rows"] += 1
        missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row.get(k, "").strip()]
        if missing:
            what = "is missing" if missing[0] not in row else "is empty"
            broken.add(line, f"the field {missing[0]!r} {what}")
            continue
        rows.append((line, row))
    if not rows:
        raise ImportFileError(
            f"{path} has no usable preference pairs ({counts['rows']} rows read, {len(broken.rows)} broken); "
            "each row needs non-empty prompt, chosen and rejected."
        )
    records: list[dict[str, Any]] = []
    for n, (line, row) in enumerate(rows):
        if cancelled and cancelled():
            break
        pair = ("", "", "none") if persona_source == "none" else _persona_pair(row, persona_source)
        if pair is None:
            if persona_source in ("gold", "retr"):
                broken.add(
                    line,
                    f"the row has no {persona_source} personas (chosen_persona_{persona_source}, "
                    f"rejected_persona_{persona_source})",
                )
                continue
            if infer is None:
                raise ImportFileError(
                    f"{path}, line {line}: the row has no personas and no engine was given to infer them; "
                    "set the dataset's engine or use a file with gold or retrieved personas."
                )
            prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
            cp = infer(prompt, chosen, rejected)
            rp = infer(prompt, rejected, chosen) if cp else None
            counts["inference_calls"] += 1 if cp is None else 2
            if not cp or not rp:
                counts["inference_failed"] += 1
                if progress:
                    progress(n + 1, len(rows))
                continue
            pair = (cp, rp, "inferred")
        chosen_persona, rejected_persona, source = pair
        counts[f"persona_{source}"] += 1
        meta = {
            "row": line,
            "chosen_persona": chosen_persona,
            "rejected_persona": rejected_persona,
            "persona_source": source,
        }
        prompt, chosen, rejected = row["prompt"], row["chosen"].strip(), row["rejected"].strip()
        sides = [("chosen", chosen_persona, chosen, rejected)]
        if both_sides:
            sides.append(("rejected", rejected_persona, rejected, chosen))
        for side, persona, good, bad in sides:
            if kind == "sft":
                records.append(
                    {"prompt": template(prompt, persona), "completion": " " + good, "meta": {**meta, "side": side}}
                )
            else:
                records.append(
                    {
                        "prompt": template(prompt, persona),
                        "chosen": " " + good,
                        "rejected": " " + bad,
                        "meta": {**meta, "side": side},
                    }
                )
        if progress:
            progress(n + 1, len(rows))
    counts["broken_rows"] = len(broken.rows)
    stats: dict[str, Any] = dict(sorted(counts.items()))
    stats["broken"] = broken.as_list()
    stats["persona_source"] = persona_source
    if not records:
        if counts["inference_failed"]:
            raise ValueError(
                f"The engine returned no usable persona for any of the {counts['inference_failed']} pairs "
                f"of {path}; use a stronger teacher engine or a file with gold or retrieved personas."
            )
        raise ImportFileError(f"{path} gave no examples; see the broken rows.")
    return records, stats
