"""What can be wrong with a session, said so that a person can fix it.

Every problem names the file, the line where the TOML text can say it, the field path
(`personas[2].traits[0].text`) and what to do. tomlkit keeps no line numbers, so `key_lines`
scans the source text once and maps each table header and key to its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sessions.model import Session
from sessions.workspace import ID_RULE, id_problem

DATASET_FORMATS = (
    "chat_demos",
    "first_person",
    "synthetic_docs",
    "persona_chat",
    "tailoring_sft",
    "tailoring_dpo",
)
DATASET_GENERATORS = ("template", "llm", "general", "import")
ENGINE_KINDS = ("llamacpp", "transformers", "openai")
TRAIT_LABELS = ("expressed", "not_shown", "contradicted")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a session file: where (file, line, field) and what to do."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class SessionError(ValueError):
    """A session that cannot be loaded or saved; `.problems` lists every reason."""

    def __init__(self, problems: Sequence[Problem] | str, path: str | Path = ""):
        if isinstance(problems, str):
            problems = [Problem(str(path), None, "", problems)]
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid session"
        more = len(self.problems) - 1
        if more:
            first += f" (and {more} more problem{'s' if more > 1 else ''})"
        super().__init__(first)


def field_path(keys: Iterable) -> str:
    """("personas", 2, "traits", 0, "text") -> "personas[2].traits[0].text"."""
    out = ""
    for k in keys:
        if isinstance(k, int):
            out += f"[{k}]"
        else:
            k = str(k)
            if not re.fullmatch(r"[A-Za-z0-9_-]+", k):
                k = '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += f".{k}" if out else k
    return out


# ---------------------------------------------------------------------------------------------
# line numbers from TOML source text

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(s: str, i: int) -> tuple[list[str], int]:
    """Parse a (dotted) key starting at s[i]; return its parts and the index after it."""
    parts = []
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == '"':
            j, buf = i + 1, []
            while j < len(s) and s[j] != '"':
                if s[j] == "\\" and j + 1 < len(s):
                    esc = s[j + 1]
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(esc, esc))
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        elif i < len(s) and s[i] == "'":
            j = s.find("'", i + 1)
            j = len(s) if j < 0 else j
            parts.append(s[i + 1 : j])
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return parts, i


def key_lines(text: str) -> dict[tuple, int]:
    """Map each table header and key of TOML `text` to its 1-based line.

    Paths carry array-of-tables indices: the key `text` under the first `[[personas.traits]]`
    of the third `[[personas]]` is ("personas", 2, "traits", 0, "text").
    """
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()
    depth = 0  # open [ or { inside a value
    in_string = ""  # the closing delimiter of an open multi-line string

    def resolve(parts: list[str]) -> tuple:
        path: tuple = ()
        for part in parts:
            path += (part,)
            if path in counts:
                path += (counts[path],)
        return path

    for lineno, raw in enumerate(text.splitlines(), 1):
        i = 0
        if in_string:
            end = _find_close(raw, 0, in_string)
            if end < 0:
                continue
            in_string, i = "", end
        elif depth == 0:
            stripped = raw.lstrip()
            i = len(raw) - len(stripped)
            if stripped.startswith("[["):
                parts, _ = _parse_key(raw, i + 2)
                if parts:
                    parent = resolve(parts[:-1]) + (parts[-1],)
                    counts[parent] = counts.get(parent, -1) + 1
                    current = parent + (counts[parent],)
                    lines.setdefault(parent, lineno)
                    lines[current] = lineno
                continue
            if stripped.startswith("["):
                parts, _ = _parse_key(raw, i + 1)
                if parts:
                    current = resolve(parts)
                    lines.setdefault(current, lineno)
                continue
            if stripped and stripped[0] not in "#":
                parts, j = _parse_key(raw, i)
                if parts and j < len(raw) and raw[j] == "=":
                    path = current
                    for part in parts:
                        path += (part,)
                        lines.setdefault(path, lineno)
                    i = j + 1
        depth, in_string = _scan_value(raw, i, depth)
    return lines


def _find_close(s: str, i: int, delim: str) -> int:
    while True:
        j = s.find(delim, i)
        if j < 0:
            return -1
        if delim == '"""':
            backslashes = len(s[:j]) - len(s[:j].rstrip("\\"))
            if backslashes % 2:
                i = j + 1
                continue
        end = j + 3
        while end < len(s) and s[end] == delim[0] and end - j < 5:
            end += 1  # up to two quotes may end the string's content
        return end


def _scan_value(s: str, i: int, depth: int) -> tuple[int, str]:
    """Follow brackets and strings to the end of the line; return (depth, open ml delimiter)."""
    while i < len(s):
        c = s[i]
        if c == "#":
            break
        if s.startswith('"""', i) or s.startswith("'''", i):
            delim = s[i : i + 3]
            end = _find_close(s, i + 3, delim)
            if end < 0:
                return depth, delim
            i = end
            continue
        if c == '"':
            i += 1
            while i < len(s) and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
            i += 1
            continue
        if c == "'":
            j = s.find("'", i + 1)
            i = len(s) if j < 0 else j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, ""


def line_for(lines: dict[tuple, int], keys: tuple) -> int | None:
    """The line of `keys`, or of its nearest ancestor that the text names."""
    keys = tuple(keys)
    while keys:
        if keys in lines:
            return lines[keys]
        keys = keys[:-1]
    return None


# ---------------------------------------------------------------------------------------------
# checks on the typed session


def check_session(session: Session) -> list[tuple[tuple, str]]:
    """Every semantic problem of `session` as (field path keys, message)."""
    out: list[tuple[tuple, str]] = []

    def unique_ids(items: list, keys: tuple, noun: str) -> None:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            ident = item.id
            path = keys + (i, "id")
            problem = id_problem(ident)
            if problem:
                shown = json.dumps(ident, ensure_ascii=False) if isinstance(ident, str) else ""
                out.append((path, f"{shown} {problem} and ids become file names; {ID_RULE}.".lstrip()))
                continue
            if ident in seen:
                first = field_path(keys + (seen[ident],))
                out.append((path, f'"{ident}" is already the id of {first}; give each {noun} its own id.'))
            else:
                seen[ident] = i

    unique_ids(session.personas, ("personas",), "persona")
    persona_ids = {p.id for p in session.personas}
    for i, persona in enumerate(session.personas):
        at = ("personas", i)
        if not persona.name.strip():
            out.append((at + ("name",), "is empty; give the persona a name."))
        unique_ids(persona.traits, at + ("traits",), "trait in a persona")
        for t, trait in enumerate(persona.traits):
            tat = at + ("traits", t)
            if not trait.text.strip():
                out.append((tat + ("text",), 'is empty; write the trait as a sentence, e.g. "I keep bees."'))
            for k, probe in enumerate(trait.knowledge_probes):
                which = f"trait {trait.id!r} knowledge probe {k + 1}"
                for name in ("question", "affirm", "deny"):
                    if not getattr(probe, name).strip():
                        out.append(
                            (tat + ("knowledge_probes", k, name), f"is empty in {which}; write the probe's {name}.")
                        )
                if probe.affirm.strip() and " ".join(probe.affirm.lower().split()) == " ".join(
                    probe.deny.lower().split()
                ):
                    out.append(
                        (
                            tat + ("knowledge_probes", k, "deny"),
                            f"is the same as affirm in {which}, so the probe cannot tell knowing from not; "
                            "write an answer that denies the trait.",
                        )
                    )
            for k, prompt in enumerate(trait.expression_probes):
                if not prompt.strip():
                    out.append((tat + ("expression_probes", k), "is empty; write an open prompt or remove it."))

    unique_ids(session.engines, ("engines",), "engine")
    engine_ids = {e.id for e in session.engines}
    for i, engine in enumerate(session.engines):
        if engine.kind not in ENGINE_KINDS:
            out.append((("engines", i, "kind"), _enum_message(engine.kind, ENGINE_KINDS)))

    unique_ids(session.datasets, ("datasets",), "dataset")
    dataset_ids = {d.id for d in session.datasets}
    for i, ds in enumerate(session.datasets):
        at = ("datasets", i)
        if isinstance(ds.id, str) and ds.id.endswith(".heldout"):
            message = f'"{ds.id}" ends in ".heldout", which names another dataset\'s held-out file; pick another id.'
            out.append((at + ("id",), message))
        if ds.format not in DATASET_FORMATS:
            out.append((at + ("format",), _enum_message(ds.format, DATASET_FORMATS)))
        if ds.generator not in DATASET_GENERATORS:
            out.append((at + ("generator",), _enum_message(ds.generator, DATASET_GENERATORS)))
        if ds.persona and ds.persona not in persona_ids:
            out.append((at + ("persona",), _missing_ref("persona", ds.persona, persona_ids)))
        if ds.engine and ds.engine not in engine_ids:
            out.append((at + ("engine",), _missing_ref("engine", ds.engine, engine_ids)))
        for k, ref in enumerate(ds.mix):
            if ref not in dataset_ids or ref == ds.id:
                out.append((at + ("mix", k), _missing_ref("dataset", ref, dataset_ids - {ds.id})))
        if not 0.0 <= ds.held_out < 1.0:
            message = f"is {ds.held_out}; write a fraction from 0 up to (not including) 1, e.g. 0.1."
            out.append((at + ("held_out",), message))
        if ds.size < 0:
            out.append((at + ("size",), f"is {ds.size}; write how many examples to build (0 or more)."))

    unique_ids(session.runs, ("runs",), "run")
    for i, run in enumerate(session.runs):
        for k, ref in enumerate(run.datasets):
            if ref not in dataset_ids:
                out.append((("runs", i, "datasets", k), _missing_ref("dataset", ref, dataset_ids)))

    unique_ids(session.evals, ("evals",), "evaluation")

    for i, ann in enumerate(session.annotations):
        at = ("annotations", i)
        if not 0 <= ann.consistency <= 5:
            out.append((at + ("consistency",), f"is {ann.consistency}; rate from 1 to 5, or 0 for not rated."))
        for trait_id, label in ann.trait_labels.items():
            if label not in TRAIT_LABELS:
                out.append((at + ("trait_labels", trait_id), _enum_message(label, TRAIT_LABELS)))
    return out


def all_problems(type_problems: list[tuple[tuple, str]], session: Session) -> list[tuple[tuple, str]]:
    """Type problems from decoding, then the semantic ones on fields that decoded fine.

    A field with the wrong type was replaced by a placeholder ("" or []), so a semantic check
    on it (or inside it) would only repeat the same problem in other words.
    """
    bad = [keys for keys, _ in type_problems]
    semantic = [
        (keys, message) for keys, message in check_session(session) if not any(keys[: len(b)] == b for b in bad)
    ]
    return list(type_problems) + semantic


def _enum_message(value: object, allowed: Sequence[str]) -> str:
    choices = ", ".join(f'"{a}"' for a in allowed)
    return f'"{value}" is not one of {choices}; use one of those.'


def _missing_ref(noun: str, ref: str, known: set[str]) -> str:
    known = {k for k in known if isinstance(k, str) and not id_problem(k)}
    if known:
        listing = ", ".join(f'"{k}"' for k in sorted(known))
        return f'names {noun} "{ref}", which this session does not have; use one of {listing}.'
    return f'names {noun} "{ref}", which this session does not have; add that {noun} first.'


def problems_for(raw: Iterable[tuple[tuple, str]], path: str | Path, text: str | None = None) -> list[Problem]:
    """Turn (keys, message) pairs into Problems, with lines looked up in `text` if given."""
    lines = key_lines(text) if text is not None else {}
    problems = [
        Problem(str(path), line_for(lines, keys) if lines else None, field_path(keys), message) for keys, message in raw
    ]
    # In file order, as a compiler lists errors (stable: same-line problems keep their order).
    return sorted(problems, key=lambda p: p.line if p.line is not None else float("inf"))


def validate(session: Session, path: str | Path = "", text: str | None = None) -> list[Problem]:
    """Every semantic problem of `session`; lines come from `text` when it is the file it was read from."""
    return problems_for(check_session(session), path, text)


def validate_file(path: str | Path) -> list[Problem]:
    """Every problem of the session file at `path` (empty when it loads cleanly)."""
    from sessions.store import SessionFile  # store imports this module

    try:
        SessionFile.load(path)
    except SessionError as e:
        return e.problems
    return []
