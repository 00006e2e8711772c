"""Hand labels: the queue of outputs to label, one annotator's labels with undo, blind order, export.

The queue is built from what is on disk, never stored: every eval job's `outputs.jsonl`
(`<workspace>/jobs/<id>/outputs.jsonl`, one reply per line) and the chat pane's
`<workspace>/annotation_queue.jsonl`. Each output has a stable key — `<job-id>:<index>` (the
same id `evaluators.agreement` and the eval job use) or `chat:<line-index>` — and labels are
`sessions.model.Annotation`s keyed by output + annotator, so several people can label the same
queue and the judge's labels can be compared with theirs. Saving is the caller's: the UI saves
the session the moment a label is given.

No Textual here: the Annotate pane and `persona-tui annotate` both drive this module.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluators.evaluate.reader import jobs_with_outputs, output_id, read_outputs
from evaluators.probes import CONTRADICTED, EXPRESSED, LABELS, NOT_SHOWN
from sessions.model import Annotation, Persona, Session, Trait

CHAT_QUEUE_FILE = "annotation_queue.jsonl"
CHAT_SOURCE = "chat"
ANNOTATOR_ENV = "PERSONA_TUI_ANNOTATOR"

LABEL_TEXT = {EXPRESSED: "expressed", NOT_SHOWN: "not shown", CONTRADICTED: "contradicted"}

# Outputs that are not a model's free reply: knowledge probes are scored by log-probabilities,
# perplexity rows hold reference text, and pair rows repeat replies already queued as "reply".
NOT_QUEUED_KINDS = frozenset({"knowledge", "perplexity", "pair"})


def default_annotator(explicit: str | None = None) -> str:
    """Who is labelling: the name given, else $PERSONA_TUI_ANNOTATOR, else the OS user."""
    for name in (explicit, os.environ.get(ANNOTATOR_ENV)):
        if name and name.strip():
            return name.strip()
    try:
        return getpass.getuser() or "annotator"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "annotator"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- the queue


@dataclass
class QueueItem:
    """One output to label, with what a person needs to judge it."""

    key: str  # "<job-id>:<index>" or "chat:<line-index>": Annotation.output
    source: str  # the job id, or "chat"
    prompt: str
    reply: str
    model: str = ""  # who wrote the reply; hidden in blind mode
    persona_id: str = ""
    persona: Persona | None = None
    kind: str = ""  # the eval output's kind (expression, reply, reference...) or "chat"
    trait: str = ""  # the trait this output was a probe of, if any
    reference: str = ""  # the reference reply, for reference-metric outputs
    turn: int = 0  # a drift conversation's turn (1-based), 0 when the output is not one
    conversation: int = 0  # which of the model's drift conversations
    fork: bool = False  # a probe asked on a fork of the conversation at that turn

    def traits(self) -> list[Trait]:
        """The persona's traits, the one this output probed first."""
        traits = list(self.persona.traits) if self.persona else []
        traits.sort(key=lambda t: t.id != self.trait)  # stable: the rest keep their order
        return traits

    def describe(self, blind: bool) -> dict[str, str]:
        """What may be shown about the output; blind leaves out the model and anything that could
        point to it (the key names the job, the kind tells chat replies apart)."""
        out = {"persona": self.persona_id, "trait": self.trait}
        if self.turn:  # the turn says nothing about the model: shown blind too
            out["turn"] = f"{self.turn}" + (" (probe on a fork)" if self.fork else "")
            if self.conversation:
                out["conversation"] = str(self.conversation)
        if not blind:
            out = {"output": self.key, "model": self.model, "kind": self.kind, **out}
        return {k: v for k, v in out.items() if v}


@dataclass
class Queue:
    items: list[QueueItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # lines or files that were left out, and why

    def find(self, key: str) -> QueueItem | None:
        return next((item for item in self.items if item.key == key), None)

    def ordered(self, annotator: str, blind: bool) -> list[QueueItem]:
        return blind_order(self.items, annotator) if blind else list(self.items)


def blind_order(items: Sequence[QueueItem], annotator: str) -> list[QueueItem]:
    """The items shuffled by a seed of the annotator's name: stable across restarts, different per
    person, and an output added later does not move the others relative to each other.
    """

    def rank(item: QueueItem) -> str:
        return hashlib.sha256(f"{annotator}\x00{item.key}".encode()).hexdigest()

    return sorted(items, key=rank)


def prompt_text(prompt: Any) -> str:
    """A prompt as readable text: a string as is, chat messages as `role: content` lines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        lines = []
        for m in prompt:
            if isinstance(m, Mapping):
                lines.append(f"{m.get('role', '?')}: {m.get('content', '')}")
            else:
                lines.append(str(m))
        return "\n".join(lines)
    return "" if prompt is None else str(prompt)


def _whole(value: Any) -> int:
    """A positive whole number from an output's field, else 0 (absent or damaged)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _persona_ref(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("id", "")
    return value if isinstance(value, str) else ""


def read_object_lines(path: Path, problems: list[str]) -> list[tuple[int, dict]]:
    """(0-based line index, object) of each JSON-object line; bad lines are named in `problems`."""
    from sessions.jsonl import iter_jsonl

    def bad(n: int, reason: str) -> None:
        problems.append(f"{path} line {n} {reason.split(' (')[0]}; that output is left out.")

    try:  # a last line without its newline is still being written by a running job
        return [(n - 1, obj) for n, obj in iter_jsonl(path, bad=bad, partial_tail=True, errors="replace")]
    except OSError as e:
        problems.append(f"{path} could not be read ({e.strerror or e}); its outputs are left out.")
        return []


def _job_persona(job_dir: Path, problems: list[str]) -> Persona | None:
    """The persona frozen in the job's spec (what the model was evaluated against), if any."""
    from sessions import codec
    from supervisor import jobs

    try:
        spec = jobs.read_spec(job_dir)
    except (OSError, ValueError):
        return None
    plain = spec.get("persona")
    if not isinstance(plain, Mapping):
        return None
    raw: list = []
    persona = codec.decode(Persona, dict(plain), ("persona",), raw)
    if raw:
        problems.append(f"{job_dir / 'spec.toml'}: its persona is damaged; the session's persona is shown instead.")
        return None
    return persona


def _job_order(job_dir: Path) -> tuple[float, str]:
    """Jobs in the order they were created (their spec's `created`, else the folder's mtime)."""
    from supervisor import jobs

    try:
        created = float(jobs.read_spec(job_dir).get("created", 0.0))
    except (OSError, ValueError, TypeError):
        created = 0.0
    if not created:
        try:
            created = job_dir.stat().st_mtime
        except OSError:
            created = 0.0
    return created, job_dir.name


def build_queue(session: Session, workspace: str | os.PathLike[str]) -> Queue:
    """Every labellable output on disk: eval jobs in creation order, then chat replies sent here.

    Tolerant: a missing key leaves a field empty, a damaged line is left out and named in
    `problems`; only outputs with a reply are queued.
    """
    workspace = Path(workspace)
    queue = Queue()
    for job_dir in sorted(jobs_with_outputs(workspace), key=_job_order):
        frozen = None
        frozen_read = False
        for row in read_outputs(job_dir, queue.problems):
            reply = row.get("reply")
            if not isinstance(reply, str) or str(row.get("kind", "")) in NOT_QUEUED_KINDS:
                continue
            key = str(row.get("output") or output_id(job_dir.name, row["index"]))
            persona_id = _persona_ref(row.get("persona"))
            if not frozen_read:
                frozen, frozen_read = _job_persona(job_dir, queue.problems), True
            persona = None
            if frozen is not None and (not persona_id or frozen.id == persona_id):
                persona = frozen
            elif persona_id:
                persona = session.persona(persona_id)
            queue.items.append(
                QueueItem(
                    key=key,
                    source=job_dir.name,
                    prompt=prompt_text(row.get("prompt")),
                    reply=reply,
                    model=str(row.get("model") or ""),
                    persona_id=persona.id if persona else persona_id,
                    persona=persona,
                    kind=str(row.get("kind") or "reply"),
                    trait=str(row.get("trait") or ""),
                    reference=row["reference"] if isinstance(row.get("reference"), str) else "",
                    turn=_whole(row.get("turn")),
                    conversation=_whole(row.get("conversation")),
                    fork=row.get("fork") is True,
                )
            )
    chat = workspace / CHAT_QUEUE_FILE
    if chat.is_file():
        for i, row in read_object_lines(chat, queue.problems):
            reply = row.get("reply")
            if not isinstance(reply, str):
                continue
            persona_id = _persona_ref(row.get("persona"))
            queue.items.append(
                QueueItem(
                    key=f"{CHAT_SOURCE}:{i}",
                    source=CHAT_SOURCE,
                    prompt=prompt_text(row.get("prompt")),
                    reply=reply,
                    model=str(row.get("engine") or row.get("model") or ""),
                    persona_id=persona_id,
                    persona=session.persona(persona_id) if persona_id else None,
                    kind=CHAT_SOURCE,
                    trait=str(row.get("trait") or ""),
                )
            )
    seen: set[str] = set()
    unique = []
    for item in queue.items:
        if item.key in seen:
            queue.problems.append(f"output {item.key} appears twice; the second copy is left out.")
            continue
        seen.add(item.key)
        unique.append(item)
    queue.items = unique
    return queue


def send_to_annotation(
    workspace: str | os.PathLike[str], prompt: Any, reply: str, engine: str = "", persona: str = ""
) -> str:
    """Append a chat reply to the workspace's annotation queue; return its output key.

    One line per reply, appended and flushed to disk at once, so a reply sent is never lost.
    """
    path = Path(workspace) / CHAT_QUEUE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {"source": CHAT_SOURCE, "prompt": prompt, "reply": reply, "engine": engine, "persona": persona},
        ensure_ascii=False,
    )
    with open(path, "a+", encoding="utf-8") as f:
        f.seek(0)
        text = f.read()
        if text and not text.endswith("\n"):
            f.write("\n")
            text += "\n"
        index = text.count("\n")
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return f"{CHAT_SOURCE}:{index}"


# ----------------------------------------------------------------------------- labels


def has_labels(ann: Annotation | None) -> bool:
    """An output counts as labelled once a trait is labelled or its consistency rated."""
    return ann is not None and (bool(ann.trait_labels) or ann.consistency > 0)


def _empty(ann: Annotation) -> bool:
    return not ann.trait_labels and not ann.consistency and not ann.note.strip()


class Labelling:
    """One annotator's labels in a session's annotations, changed in place, with undo.

    Every change returns the key it touched; the caller saves the session right after.
    """

    def __init__(self, session: Session, annotator: str) -> None:
        self.session = session
        self.annotator = annotator
        # (output key, annotator, the annotation as it was before, or None when there was none)
        self._undo: list[tuple[str, str, Annotation | None]] = []

    def get(self, key: str, annotator: str | None = None) -> Annotation | None:
        who = self.annotator if annotator is None else annotator
        return next((a for a in self.session.annotations if a.output == key and a.annotator == who), None)

    def is_labelled(self, key: str) -> bool:
        return has_labels(self.get(key))

    def progress(self, keys: Iterable[str]) -> tuple[int, int]:
        """(labelled by this annotator, total) over `keys`."""
        mine = {a.output for a in self.session.annotations if a.annotator == self.annotator and has_labels(a)}
        keys = list(keys)
        return sum(k in mine for k in keys), len(keys)

    def _change(self, key: str, blind: bool | None, change) -> Annotation | None:
        ann = self.get(key)
        before = copy.deepcopy(ann)
        if ann is None:
            ann = Annotation(output=key, annotator=self.annotator)
            new = True
        else:
            new = False
        after = copy.deepcopy(ann)
        change(after)
        if after == ann and not new:
            return ann  # nothing changed: no undo step, nothing to save
        if new and _empty(after):
            return None
        after.time = now_iso()
        if blind is not None:
            after.extra["blind"] = blind
        self._undo.append((key, self.annotator, before))
        if new:
            self.session.annotations.append(after)
        elif _empty(after):
            self.session.annotations.remove(ann)
            return None
        else:
            self.session.annotations[self.session.annotations.index(ann)] = after
        return after

    def label_trait(self, key: str, trait_id: str, label: str | None, blind: bool | None = None) -> Annotation | None:
        """Set (or with None clear) one trait's label for the output."""
        if label is not None and label not in LABELS:
            raise ValueError(f"trait label {label!r} is not one of {', '.join(LABELS)}; use one of those.")

        def change(a: Annotation) -> None:
            if label is None:
                a.trait_labels.pop(trait_id, None)
            else:
                a.trait_labels[trait_id] = label

        return self._change(key, blind, change)

    def rate(self, key: str, consistency: int, blind: bool | None = None) -> Annotation | None:
        """Overall persona consistency, 1 (not at all) to 5 (fully); 0 clears the rating."""
        if not 0 <= int(consistency) <= 5:
            raise ValueError(f"consistency {consistency} is out of range; rate from 1 to 5, or 0 to clear.")

        def change(a: Annotation) -> None:
            a.consistency = int(consistency)

        return self._change(key, blind, change)

    def set_note(self, key: str, note: str) -> Annotation | None:
        def change(a: Annotation) -> None:
            a.note = note.strip()

        return self._change(key, None, change)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> str | None:
        """Put back the annotation as it was before the last change; return its output key."""
        if not self._undo:
            return None
        key, annotator, before = self._undo.pop()
        current = self.get(key, annotator)
        annotations = self.session.annotations
        if before is None:
            if current is not None:
                annotations.remove(current)
        elif current is None:
            annotations.append(before)
        else:
            annotations[annotations.index(current)] = before
        return key


# ----------------------------------------------------------------------------- export


def export_records(session: Session, queue: Queue | None = None, annotator: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready record per annotation, with the output's prompt, reply and model when the
    output is still on disk. `annotator` keeps only that person's labels.
    """
    out = []
    for ann in session.annotations:
        if annotator is not None and ann.annotator != annotator:
            continue
        record: dict[str, Any] = {
            "output": ann.output,
            "annotator": ann.annotator,
            "trait_labels": dict(ann.trait_labels),
            "consistency": ann.consistency or None,  # null: not rated
            "note": ann.note,
            "time": ann.time,
        }
        extra = dict(ann.extra)
        if "blind" in extra:
            record["blind"] = bool(extra.pop("blind"))
        item = queue.find(ann.output) if queue is not None else None
        if item is not None:
            record.update(
                source=item.source,
                kind=item.kind,
                model=item.model,
                persona=item.persona_id,
                trait=item.trait,
                prompt=item.prompt,
                reply=item.reply,
            )
            if item.turn:
                record.update(turn=item.turn, conversation=item.conversation, fork=item.fork)
        if extra:
            record["extra"] = extra
        out.append(record)
    return out


def export_jsonl(
    session: Session, path: str | os.PathLike[str], queue: Queue | None = None, annotator: str | None = None
) -> int:
    """Write the labels as JSON Lines (atomically); return how many were written."""
    path = Path(path)
    records = export_records(session, queue, annotator)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    from sessions.store import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, backup=False)
    except OSError as e:
        raise ValueError(f"could not write {path} ({e.strerror or e}); choose a folder you can write to.") from None
    return len(records)
