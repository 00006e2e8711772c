"""Personas in and out: Character Card V2 (and V1) JSON, and plain persona lists.

Card mapping: name -> name, description -> summary, personality -> style, mes_example ->
examples (the lines `{{char}}` says, else `<START>` blocks, else lines). Every other card
field is kept verbatim in `Persona.card`, so an imported card exports unchanged; where the
example split cannot be joined back to the same text, the original string is kept there too.
TOML has no null: where a card has one (lorebooks often do), its path is listed under
`card["_nulls"]`; a value TOML cannot hold at all is kept as JSON text under `card["_json"]`.
Facts and traits, which cards have no place for, travel in `extensions.persona_tui`.

Persona lists are Synthetic-Persona-Chat's shape: one "I …" sentence per line.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomlkit

from sessions import codec
from sessions.model import Persona, Trait
from sessions.workspace import make_id

SPEC_V2 = "chara_card_v2"
SPEC_V3 = "chara_card_v3"  # a superset of V2: read like V2, its extra fields kept
CARD_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "character_book",
    "tags",
    "creator",
    "character_version",
    "extensions",
)
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_MAPPED = {"name", "description", "personality", "mes_example"}
_LISTS = {"alternate_greetings", "tags"}
_OBJECTS = {"extensions", "character_book"}
EXTENSION_KEY = "persona_tui"  # facts and traits, which cards have no field for
JSON_KEY = "_json"  # card values TOML cannot hold, as JSON text
NULLS_KEY = "_nulls"  # where a card had JSON nulls (TOML has none)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class CardError(ValueError):
    """A file that cannot be read as a card or persona list; the message names it."""


# ---------------------------------------------------------------------------------------------
# Character cards


def import_card(path: str | Path, taken: Iterable[str] = ()) -> Persona:
    """Read a Character Card (V2/V3 JSON, V1 JSON, or a PNG with one embedded) as a Persona.

    `taken` are persona ids already in the session; the new id avoids them.
    """
    path = Path(path)
    data = _read_bytes(path, "a Character Card")
    if data.startswith(PNG_MAGIC):
        data = _png_card(data, path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CardError(f"{path} is not a Character Card: it is not JSON text; pick a card .json file.") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CardError(
            f"{path} is not a Character Card: line {e.lineno} column {e.colno} is not valid JSON "
            f"({e.msg}); export the card again from where it came from."
        ) from None
    return card_to_persona(obj, str(path), taken)


def card_to_persona(obj: Any, source: str = "the card", taken: Iterable[str] = ()) -> Persona:
    """A Persona from a parsed card object (see import_card)."""
    data = _card_data(obj, source)
    for key in (
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "creator",
        "character_version",
    ):
        if key in data and not isinstance(data[key], str):
            raise CardError(f"{source}: data.{key} should be text, not {codec.describe(data[key])}; fix the card.")
    for key in _LISTS:
        if key in data and not (isinstance(data[key], list) and all(isinstance(x, str) for x in data[key])):
            raise CardError(f"{source}: data.{key} should be a list of text; fix the card.")
    for key in _OBJECTS:
        if key in data and not isinstance(data[key], (dict, type(None))):
            raise CardError(f"{source}: data.{key} should be an object; fix the card.")

    name = data["name"].strip()
    mes = data.get("mes_example", "")
    examples = split_examples(mes)
    card: dict[str, Any] = {}
    for key, value in data.items():
        if key in _MAPPED:
            continue
        card[key] = value
    if join_examples(examples) != mes:
        card["mes_example"] = mes  # the split is lossy: keep the original for export

    facts: list[str] = []
    traits: list[Trait] = []
    extensions = card.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get(EXTENSION_KEY), dict):
        ours = extensions[EXTENSION_KEY]
        problems: list = []
        facts = [f for f in ours.get("facts", []) if isinstance(f, str)]
        traits = [codec.decode(Trait, t, (), problems) for t in ours.get("traits", []) if isinstance(t, dict)]
        if problems:
            raise CardError(f"{source}: extensions.{EXTENSION_KEY} holds traits this version cannot read; remove it.")
        card["extensions"] = {k: v for k, v in extensions.items() if k != EXTENSION_KEY}

    return Persona(
        id=make_id(name, taken, fallback="persona"),
        name=name,
        summary=data.get("description", ""),
        style=data.get("personality", ""),
        facts=facts,
        examples=examples,
        traits=traits,
        card=_storable(card),
    )


def _card_data(obj: Any, source: str) -> dict:
    if not isinstance(obj, dict):
        raise CardError(
            f"{source} is not a Character Card: it holds {codec.describe(obj)}, not an object with "
            f'"spec": "{SPEC_V2}"; pick a card exported as JSON.'
        )
    spec = obj.get("spec")
    if spec is not None:
        if spec not in (SPEC_V2, SPEC_V3):
            raise CardError(
                f'{source} is a "{spec}" card; persona-tui reads {SPEC_V2} (and V1) cards, so '
                f"export it as Character Card V2."
            )
        data = obj.get("data")
        if not isinstance(data, dict):
            raise CardError(f'{source} says "spec": "{spec}" but has no "data" object; export the card again.')
    elif isinstance(obj.get("name"), str) and any(isinstance(obj.get(k), str) for k in V1_FIELDS[1:]):
        data = {k: obj[k] for k in V1_FIELDS if isinstance(obj.get(k), str)}
        if isinstance(obj.get("creatorcomment"), str):  # SillyTavern's V1 name for creator_notes
            data["creator_notes"] = obj["creatorcomment"]
    else:
        raise CardError(
            f'{source} is not a Character Card: it has no "spec": "{SPEC_V2}" and no V1 fields '
            f'("name", "description", ...); pick a card exported as JSON.'
        )
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise CardError(f"{source}: the card has no name; give the character a name in the card.")
    return data


def export_card(persona: Persona) -> dict:
    """The persona as a Character Card V2 object (imported cards come back unchanged)."""
    card = _loadable(persona.card)
    data: dict[str, Any] = {
        "name": persona.name,
        "description": persona.summary,
        "personality": persona.style,
        "scenario": card.get("scenario", ""),
        "first_mes": card.get("first_mes", ""),
        "mes_example": _export_examples(persona, card),
        "creator_notes": card.get("creator_notes", ""),
        "system_prompt": card.get("system_prompt", ""),
        "post_history_instructions": card.get("post_history_instructions", ""),
        "alternate_greetings": card.get("alternate_greetings", []),
    }
    if "character_book" in card:  # optional in the spec: export it only if the card had one
        data["character_book"] = card["character_book"]
    data["tags"] = card.get("tags", [])
    data["creator"] = card.get("creator", "")
    data["character_version"] = card.get("character_version", "")
    extensions = dict(card.get("extensions") or {})
    if persona.facts or persona.traits:
        extensions[EXTENSION_KEY] = {
            "facts": list(persona.facts),
            "traits": [codec.to_plain(t) for t in persona.traits],
        }
    data["extensions"] = extensions
    for key, value in card.items():  # fields a newer card spec or another tool added
        if key not in data and key != "mes_example":  # (_json/_nulls were unpacked by _loadable)
            data[key] = value
    return {"spec": SPEC_V2, "spec_version": "2.0", "data": data}


def write_card(persona: Persona, path: str | Path) -> Path:
    """Write the persona's Character Card V2 JSON to `path` (atomically)."""
    from sessions.store import atomic_write

    path = Path(path)
    text = json.dumps(export_card(persona), ensure_ascii=False, indent=2) + "\n"
    atomic_write(path, text, backup=False)
    return path


_SPEAKER = re.compile(r"^\s*(\{\{\s*(char|user)\s*\}\}|<BOT>|<USER>)\s*:\s?(.*)$", re.IGNORECASE)
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)


def split_examples(text: str) -> list[str]:
    """Example lines from a card's mes_example: what {{char}} says, else <START> blocks, else lines."""
    text = text.replace("\r\n", "\n")
    turns: list[list[str]] = []
    speaking = False
    for line in text.split("\n"):
        m = _SPEAKER.match(line)
        if m:
            speaking = m.group(1).lower().replace(" ", "") in ("{{char}}", "<bot>")
            if speaking:
                turns.append([m.group(3)])
        elif _START.match(line):
            speaking = False
        elif speaking:
            turns[-1].append(line)
    lines = ["\n".join(t).strip() for t in turns]
    if any(lines):
        return [x for x in lines if x]
    if _START.search(text):
        return [b.strip() for b in _START.split(text) if b.strip()]
    return [x.strip() for x in text.split("\n") if x.strip()]


def join_examples(examples: list[str]) -> str:
    """mes_example text for example lines, in the card convention."""
    return "\n".join(f"<START>\n{{{{char}}}}: {e}" for e in examples)


def _export_examples(persona: Persona, card: dict) -> str:
    original = card.get("mes_example")
    if isinstance(original, str) and split_examples(original) == persona.examples:
        return original
    return join_examples(persona.examples)


def _storable(card: dict) -> dict:
    """Card values as Persona.card keeps them, all TOML-safe.

    JSON nulls that are object members (lorebooks have many) are left out and their paths
    listed under `_nulls`, so the rest stays readable TOML; anything else TOML cannot hold is
    kept as JSON text under `_json`.
    """
    out: dict[str, Any] = {}
    as_json: dict[str, str] = {}
    nulls: dict[str, list] = {}
    for key, value in card.items():
        if key in (JSON_KEY, NULLS_KEY):
            as_json[key] = json.dumps(value, ensure_ascii=False)
            continue
        paths: list[list] = []
        stripped = _strip_nulls(value, [], paths)
        if _toml_safe(stripped):
            out[key] = stripped
            if paths:
                nulls[key] = sorted(paths, key=json.dumps)
        else:
            as_json[key] = json.dumps(value, ensure_ascii=False)
    if nulls:
        out[NULLS_KEY] = nulls
    if as_json:
        out[JSON_KEY] = as_json
    return out


def _strip_nulls(value: Any, here: list, paths: list[list]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                paths.append(here + [k])
            else:
                out[k] = _strip_nulls(v, here + [k], paths)
        return out
    if isinstance(value, list):
        return [_strip_nulls(v, here + [i], paths) for i, v in enumerate(value)]
    return value


def _loadable(card: dict) -> dict:
    """The card values as JSON has them (see _storable)."""
    out = {k: copy.deepcopy(v) for k, v in card.items() if k not in (JSON_KEY, NULLS_KEY)}
    nulls = card.get(NULLS_KEY)
    for key, paths in nulls.items() if isinstance(nulls, dict) else ():
        for path in paths if isinstance(paths, list) else ():
            _put_null(out, [key, *path])
    stored = card.get(JSON_KEY)
    if isinstance(stored, dict):
        for key, text in stored.items():
            try:
                out[key] = json.loads(text)
            except (TypeError, ValueError):
                out[key] = text
    return out


def _put_null(root: Any, path: list) -> None:
    """Set root[path] = None, if the path still leads somewhere (a person may have edited it)."""
    node = root
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict) and isinstance(path[-1], str):
        node[path[-1]] = None


def _toml_safe(value: Any) -> bool:
    """Whether TOML stores `value` and gives back the same thing (no nulls, no huge ints...)."""
    try:
        back = tomlkit.parse(tomlkit.dumps({"v": value}))["v"]
        back = back.unwrap() if hasattr(back, "unwrap") else back
    except Exception:
        return False
    return codec.same(back, value)


def _png_card(data: bytes, path: Path) -> bytes:
    """The card JSON inside a PNG's `chara` (or `ccv3`) tEXt chunk."""
    pos, found = len(PNG_MAGIC), {}
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            keyword, _, value = body.partition(b"\x00")
            found[keyword.decode("latin-1").lower()] = value
        if kind == b"IEND":
            break
        pos += 12 + length
    raw = found.get("chara") or found.get("ccv3")
    if raw is None:
        raise CardError(f"{path} is a PNG without an embedded Character Card; pick a card PNG or JSON.")
    try:
        return base64.b64decode(raw, validate=False)
    except ValueError:
        raise CardError(f"{path}: the card inside the PNG is damaged; export the card again.") from None


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        if path.is_dir():
            raise CardError(f"{path} is a folder, not {what}; pick a file.")
        return path.read_bytes()
    except FileNotFoundError:
        raise CardError(f"{path} does not exist; check the path.") from None
    except PermissionError:
        raise CardError(f"{path} cannot be read (permission denied); check the file's permissions.") from None
    except IsADirectoryError:
        raise CardError(f"{path} is a folder, not {what}; pick a file.") from None
    except OSError as e:
        raise CardError(f"{path} cannot be read ({e.strerror or e}).") from None


# ---------------------------------------------------------------------------------------------
# Persona lists (Synthetic-Persona-Chat)

_PREFIX = re.compile(r"^(your persona|partner's persona|persona)\s*:\s*", re.IGNORECASE)
_BULLET = re.compile(r"^([-*•]|\d+[.)])\s+")
MAX_LIST_LINES = 200


def read_persona_list(path: str | Path, taken: Iterable[str] = ()) -> Persona:
    """A persona from a text file of "I …" sentences, one per line: facts, and one trait per line."""
    path = Path(path)
    data = _read_bytes(path, "a persona list")
    if b"\x00" in data:
        raise CardError(f'{path} is a binary file, not a persona list; write one "I …" sentence per line.')
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CardError(f"{path} is not UTF-8 text; save the persona list as UTF-8.") from None
    lines = []
    for raw in text.splitlines():
        line = _BULLET.sub("", _PREFIX.sub("", raw.strip())).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    if not lines:
        raise CardError(f'{path} has no persona lines; write one sentence per line, like "I love to ski."')
    if len(lines) > MAX_LIST_LINES:
        raise CardError(
            f"{path} has {len(lines)} lines; a persona list holds one short sentence per line "
            f"(at most {MAX_LIST_LINES}), so check that this is the right file."
        )
    trait_ids: list[str] = []
    traits = []
    for line in lines:
        trait_ids.append(make_id(line, trait_ids, fallback="trait"))
        traits.append(Trait(id=trait_ids[-1], text=line))
    stem = path.stem
    name = re.sub(r"[_-]+", " ", stem).strip() or "Persona"
    return Persona(
        id=make_id(stem, taken, fallback="persona"),
        name=name[:1].upper() + name[1:],
        facts=list(lines),
        traits=traits,
    )


def persona_list_text(persona: Persona) -> str:
    """The persona as a persona list: its facts (or trait texts), one per line."""
    lines = persona.facts or [t.text for t in persona.traits]
    return "".join(" ".join(line.split()) + "\n" for line in lines if line.strip())


def write_persona_list(persona: Persona, path: str | Path) -> Path:
    from sessions.store import atomic_write

    path = Path(path)
    atomic_write(path, persona_list_text(persona), backup=False)
    return path


# ---------------------------------------------------------------------------------------------
# Either, by file name


def read_persona_file(path: str | Path, taken: Iterable[str] = ()) -> Persona:
    """A persona from a `.txt` persona list or, otherwise, a Character Card (JSON or PNG)."""
    path = Path(path)
    return read_persona_list(path, taken) if path.suffix.lower() == ".txt" else import_card(path, taken)


def write_persona_file(persona: Persona, path: str | Path) -> Path:
    """A `.txt` path gets a persona list; any other a Character Card V2 JSON."""
    path = Path(path)
    return write_persona_list(persona, path) if path.suffix.lower() == ".txt" else write_card(persona, path)
