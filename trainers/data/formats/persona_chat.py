"""persona_chat: Synthetic-Persona-Chat conversations as next-turn examples where the model plays one user.

Source: the SPC CSV (columns `user 1 personas`, `user 2 personas`, `Best Generated
Conversation`; one persona sentence per line, one "User N: ..." turn per line).

Record (TRL conversational prompt-completion):

    {"prompt": [{"role": "system", "content": "Your persona:\\n- I love to bake cookies.\\n..."},
                {"role": "user", "content": "Hi!"},            # the other user's turns
                {"role": "assistant", "content": "Hello!"},     # the played user's earlier turns
                ...],
     "completion": [{"role": "assistant", "content": "I love to bake cookies and knit."}],
     "meta": {"row": 2, "side": 1, "turn": 12, "variant": "own"}}

Variants (`DatasetSpec.variant`):
- `own`: the played user's persona, then the whole conversation so far; one example per turn.
- `both`: both personas ("Your persona" and "The other person's persona"), then the conversation.
- `context`: the played user's persona and only the first N lines (`context_lines`, default 3)
  as context; the example is the next line (with a chosen side, that user's next line, the other
  user's reply joining the context), so one example per conversation.
Side (`extra.side`): "both" (default: every turn of either user is a target) or "1" / "2".

What the raw file holds and how it is handled (each counted in the statistics):
blank lines between turns (skipped); lines without a "User N:" prefix (continuations of the
previous turn, e.g. a recipe's lines; stage directions such as "[They go shopping]" or
"(User 1 laughs)" and separators "* * *" are dropped); markdown-wrapped prefixes ("*User 1:*");
two turns in a row by one user (merged); name placeholders ("[User 1's name]", "[name]",
"[username]", ...) replaced by a first name per speaker; other placeholders ("[country]") left in
context but an example whose target has one is skipped; a last turn cut off without final
punctuation is not used as a target. Broken rows (wrong field count, empty persona, no turns)
are reported by the CSV line where the record starts and skipped, or refused with `strict`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.data.formats.rows import BrokenRows, ImportFileError, csv_records
from trainers.data.generate.banks import load_bank

NAME = "persona_chat"
NEEDS_PERSONA = False
COLUMNS = ("user 1 personas", "user 2 personas", "best generated conversation")
VARIANTS = ("own", "both", "context")
DEFAULT_CONTEXT_LINES = 3

_TURN = re.compile(r"^\**\s*user\s*([12])\s*\**\s*[:：]\s*\**\s*(.*?)\s*\**\s*$", re.I)
_SEPARATOR = re.compile(r"^[\s*\-_=~#.]+$")
_STAGE = re.compile(r"^\s*(\[[^\]]*\]?|\([^)]*\)?)\s*$")
_PLACEHOLDER = re.compile(
    r"\[([^\[\]]{1,60})\]"
    r"|\((user\s*[12][^()]{0,30}|name|your name|username|insert (?:your )?name|city|town|country|age|"
    r"state|job|location|school|number|hometown|link)\)",
    re.I,
)
_LEADING_STAGE = re.compile(r"^\s*(\([^()]{3,80}\)|\[[^\[\]]{3,80}\])\s*(?=\S)")
_BARE_USER = re.compile(r"\buser\s*([12])\b(?!\s*'s name)", re.I)
_NAME_PLACEHOLDER = re.compile(
    r"^(?:user\s*([12])(?:'s)?(?:\s*name)?|name|username|user name|your name|their name|my name|"
    r"insert (?:your )?name|"
    r"his name|her name|partner'?s name|other user'?s name)$",
    re.I,
)
_SELF_INTRO = re.compile(r"(i'm|i am|my name is|this is|call me|it's)\s*$", re.I)
_END_PUNCT = re.compile(r"[.!?…\"')\]*~:;]$|[\U0001F300-\U0001FAFF\u2600-\u27BF]$")


@dataclass
class Turn:
    speaker: int
    text: str


@dataclass
class Conversation:
    line: int
    personas: dict[int, list[str]]
    turns: list[Turn]
    truncated_last: bool = False
    counts: Counter = field(default_factory=Counter)


def _personas(cell: str) -> list[str]:
    return [ln.strip() for ln in cell.replace("\r", "").split("\n") if ln.strip()]


def parse_conversation(cell: str, counts: Counter) -> list[Turn]:
    """The turns of one conversation cell, with the raw file's quirks handled and counted."""
    turns: list[Turn] = []
    for raw in cell.replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            counts["blank_lines"] += 1
            continue
        m = _TURN.match(line)
        if m:
            if line.startswith("*") or line.endswith("*"):
                counts["markdown_prefixes"] += 1
            speaker, text = int(m.group(1)), m.group(2).strip()
            if turns and turns[-1].speaker == speaker:
                counts["merged_same_speaker"] += 1
                if text:
                    turns[-1].text = f"{turns[-1].text}\n{text}".strip()
                continue
            turns.append(Turn(speaker, text))
            continue
        counts["lines_without_prefix"] += 1
        if _SEPARATOR.match(line) or _STAGE.match(line):
            counts["stage_directions"] += 1
            continue
        if not turns:
            counts["orphan_lines"] += 1
            continue
        turns[-1].text = f"{turns[-1].text}\n{line}".strip()
        counts["continuation_lines"] += 1
    return turns


def _fill_names(text: str, speaker: int, names: dict[int, str], counts: Counter) -> str:
    """Replace name placeholders by the speakers' names; inline stage directions are removed."""

    def repl(m: re.Match[str]) -> str:
        inner = (m.group(1) or m.group(2)).strip()
        nm = _NAME_PLACEHOLDER.match(inner)
        if nm:
            counts["placeholder_names"] += 1
            if nm.group(1):
                return names[int(nm.group(1))]
            before = m.string[: m.start()]
            own = _SELF_INTRO.search(before) is not None or inner.lower() in ("my name",)
            return names[speaker] if own else names[3 - speaker]
        if len(inner.split()) >= 3 and re.search(r"\buser\s*[12]\b|\bthey\b|\bhe\b|\bshe\b", inner, re.I):
            counts["stage_directions"] += 1
            return ""
        counts["placeholders_unresolved"] += 1
        return m.group(0)

    out = text
    lead = _LEADING_STAGE.match(out)
    if lead and not _NAME_PLACEHOLDER.match(lead.group(1)[1:-1].strip()):
        counts["stage_directions"] += 1  # "(15 minutes later) Hi! I'm here!"
        out = out[lead.end() :]
    out = _PLACEHOLDER.sub(repl, out)

    def bare(m: re.Match[str]) -> str:
        counts["placeholder_names"] += 1  # "Hi User 1, I'm User 2." uses the labels as names
        return names[int(m.group(1))]

    out = _BARE_USER.sub(bare, out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def read_conversations(path: Path, seed: int, broken: BrokenRows, counts: Counter) -> list[Conversation]:
    names_bank = load_bank("names")["names"]
    convs: list[Conversation] = []
    for line, row in csv_records(path, COLUMNS, broken):
        counts["rows"] += 1
        p1, p2 = _personas(row["user 1 personas"]), _personas(row["user 2 personas"])
        if not p1 or not p2:
            broken.add(line, f"the {'user 1' if not p1 else 'user 2'} personas cell is empty")
            continue
        turns = parse_conversation(row["best generated conversation"], counts)
        turns = [t for t in turns if t.text or t is turns[-1]]
        if len([t for t in turns if t.text]) < 2:
            broken.add(line, "the conversation has fewer than two 'User 1:'/'User 2:' turns")
            continue
        rng = random.Random(f"{seed}:names:{line}")
        n1, n2 = rng.sample(names_bank, 2)
        names = {1: n1, 2: n2}
        for t in turns:
            t.text = _fill_names(t.text, t.speaker, names, counts)
        conv = Conversation(line=line, personas={1: p1, 2: p2}, turns=turns)
        last = turns[-1]
        if not last.text or not _END_PUNCT.search(last.text):
            conv.truncated_last = True
            counts["truncated_last_turns"] += 1
        convs.append(conv)
    return convs


def _system(conv: Conversation, side: int, variant: str) -> str:
    own = "Your persona:\n" + "\n".join(f"- {p}" for p in conv.personas[side])
    if variant == "both":
        other = "The other person's persona:\n" + "\n".join(f"- {p}" for p in conv.personas[3 - side])
        return f"{own}\n\n{other}"
    return own


def _example(conv: Conversation, side: int, k: int, variant: str, context_from: int = 0) -> dict[str, Any]:
    history = conv.turns[context_from:k]
    prompt = [{"role": "system", "content": _system(conv, side, variant)}]
    prompt += [{"role": "assistant" if t.speaker == side else "user", "content": t.text} for t in history if t.text]
    return {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": conv.turns[k].text}],
        "meta": {"row": conv.line, "side": side, "turn": k, "variant": variant},
    }


def build_examples(
    path: Path,
    variant: str = "own",
    context_lines: int = 0,
    side: str = "both",
    seed: int = 3407,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All next-turn examples of the file, and the counts of what was found and handled."""
    variant = variant or "own"
    if variant not in VARIANTS:
        raise ImportFileError(f"persona_chat variant {variant!r} is unknown; use one of {', '.join(VARIANTS)}.")
    side = str(side or "both")
    if side not in ("both", "1", "2"):
        raise ImportFileError(f"persona_chat side {side!r} is unknown; use 'both', '1' or '2'.")
    sides = (1, 2) if side == "both" else (int(side),)
    broken = BrokenRows(path, strict)
    counts: Counter = Counter()
    convs = read_conversations(path, seed, broken, counts)
    n_ctx = context_lines if context_lines > 0 else DEFAULT_CONTEXT_LINES
    records: list[dict[str, Any]] = []
    for n, conv in enumerate(convs):
        last = len(conv.turns) - 1
        targets: list[int]
        if variant == "context":
            # The played user's first turn after the first N lines (the other user's reply, if it
            # comes first, joins the context).
            targets = [k for k in range(n_ctx, len(conv.turns)) if conv.turns[k].speaker in sides][:1]
            if not targets:
                counts["conversations_shorter_than_context"] += 1
        else:
            targets = list(range(len(conv.turns)))
        for k in targets:
            turn = conv.turns[k]
            if turn.speaker not in sides:
                continue
            if k == last and conv.truncated_last:
                counts["targets_skipped_truncated"] += 1
                continue
            if not turn.text:
                continue
            if _PLACEHOLDER.search(turn.text):
                counts["targets_skipped_placeholder"] += 1
                continue
            records.append(_example(conv, turn.speaker, k, variant))
        if progress and n % 100 == 0:
            progress(n, len(convs))
    counts["conversations"] = len(convs)
    counts["broken_rows"] = len(broken.rows)
    stats: dict[str, Any] = dict(sorted(counts.items()))
    stats["broken"] = broken.as_list()
    stats["variant"] = variant
    stats["side"] = side
    if variant == "context":
        stats["context_lines"] = n_ctx
    if not records:
        raise ImportFileError(
            f"{path} gave no usable examples ({len(convs)} conversations read, "
            f"{len(broken.rows)} broken rows); check that it is a Synthetic-Persona-Chat CSV."
        )
    return records, stats
