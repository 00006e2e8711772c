"""Dataclasses <-> TOML, generically, so a new field in `sessions.model` round-trips for free.

Three directions:
- `decode(cls, data)` builds a dataclass from plain TOML data (tomlkit's `unwrap()`): nested
  dataclasses from sub-tables, lists of them from arrays of tables, unknown keys into `extra`.
  Wrong types become problems (field path + what to write instead), never exceptions.
- `to_plain(obj)` turns a dataclass back into plain dicts/lists (extras merged in as keys).
- `merge(table, new, old, cls)` writes a plain value into an existing tomlkit table, touching
  only what differs from `old` (the plain value the table was last loaded or saved from), so
  a hand-edited file keeps its comments, key order and layout. Array-of-tables items are
  matched by `id`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import json
import math
import types
import typing
from collections import defaultdict
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, Comment, InlineTable, Null, Table, Whitespace

Keys = tuple  # a field path: ("personas", 2, "traits", 0, "text")
_MISSING = object()


# ---------------------------------------------------------------------------------------------
# type introspection


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any
    required: bool
    default: Any  # the default value (a fresh one from the factory), or _MISSING


@functools.cache
def fields_of(cls: type) -> dict[str, FieldInfo]:
    """The dataclass fields of `cls` with resolved types (the model uses string annotations)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        out[f.name] = FieldInfo(f.name, hints[f.name], default is _MISSING, default)
    return out


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def item_class(tp: Any) -> type | None:
    """The dataclass held by a `Dataclass` or `list[Dataclass]` field type, else None."""
    tp = _strip_optional(tp)
    if _is_dataclass_type(tp):
        return tp
    if typing.get_origin(tp) is list:
        (arg,) = typing.get_args(tp) or (Any,)
        arg = _strip_optional(arg)
        if _is_dataclass_type(arg):
            return arg
    return None


# ---------------------------------------------------------------------------------------------
# decoding


def describe(value: Any) -> str:
    """How a TOML value reads to a person, for error messages."""
    if value is None:
        return "nothing (None)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return "a date/time"
    return type(value).__name__


def _expected(tp: Any) -> str:
    tp = _strip_optional(tp)
    if tp is str:
        return "text"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if _is_dataclass_type(tp):
        return "a table"
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        if item_class(tp):
            return "a list of tables"
        return "a list" if arg is Any else f"a list of {_plural(arg)}"
    if origin is dict:
        return "a table"
    return "a value"


def _plural(tp: Any) -> str:
    return {str: "text", int: "whole numbers", float: "numbers", bool: "true/false values"}.get(
        _strip_optional(tp), "values"
    )


def _example(name: str, tp: Any, keys: Keys = ()) -> str:
    """How to write a value of type `tp` at `keys` in TOML, for "write …" hints."""
    tp = _strip_optional(tp)
    header = ".".join(str(k) for k in keys if not isinstance(k, int)) or name
    sample = {str: '"…"', int: "3", float: "0.5", bool: "true"}.get(tp)
    if sample:
        return f"{name} = {sample}"
    origin = typing.get_origin(tp)
    if origin is list and not item_class(tp):
        (arg,) = typing.get_args(tp) or (Any,)
        inner = {str: '"…"', int: "1", float: "0.5", bool: "true"}.get(_strip_optional(arg), "…")
        return f"{name} = [{inner}, {inner}]"
    if item_class(tp) and origin is list:
        return f"each item as a [[{header}]] table"
    return f"it as a [{header}] table"


def decode(cls: type, data: Any, keys: Keys, problems: list) -> Any:
    """Build a `cls` from plain data; append (keys, message) to `problems` for what is wrong."""
    if not isinstance(data, dict):
        problems.append((keys, f"should be a table, not {describe(data)}."))
        data = {}
    fields = fields_of(cls)
    kwargs: dict[str, Any] = {}
    for name, info in fields.items():
        if name == "extra":
            continue
        if name in data:
            ok, value = _decode_value(info.type, data[name], keys + (name,), name, problems)
            if ok:
                kwargs[name] = value
            elif info.required:
                kwargs[name] = _placeholder(info.type)
        elif info.required:
            problems.append((keys + (name,), f"is missing; add {_example(name, info.type)}."))
            kwargs[name] = _placeholder(info.type)
    unknown = {k: v for k, v in data.items() if k not in fields or k == "extra"}
    if "extra" in fields:
        for k, v in unknown.items():
            _storable(v, keys + (k,), problems)
        kwargs["extra"] = unknown
    else:
        # A settings table without `extra` is strict: an unknown key is most likely a typo.
        known = [n for n in fields if n != "extra"]
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "known keys: " + ", ".join(known) + "."
            problems.append((keys + (key,), f"is not a known setting here; {hint}"))
    return cls(**kwargs)


_TOML_SCALARS = (str, bool, int, float, dt.date, dt.time, dt.datetime)


def _storable(value: Any, keys: Keys, problems: list) -> bool:
    """Whether TOML can hold `value` (values set from Python may be None, sets, objects...)."""
    if isinstance(value, dict):
        return all([_storable(v, keys + (str(k),), problems) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return all([_storable(v, keys + (i,), problems) for i, v in enumerate(value)])
    if isinstance(value, _TOML_SCALARS):
        return True
    problems.append((keys, f"is {describe(value)}, which TOML cannot store; remove it or give it a value."))
    return False


def _placeholder(tp: Any) -> Any:
    tp = _strip_optional(tp)
    if tp in (str, int, float, bool):
        return tp()
    origin = typing.get_origin(tp)
    if origin in (list, dict):
        return origin()
    if _is_dataclass_type(tp):
        return decode(tp, {}, (), [])
    return None


def _decode_value(tp: Any, value: Any, keys: Keys, name: str, problems: list) -> tuple[bool, Any]:
    if value is None and _strip_optional(tp) is not tp:
        return True, None  # an optional field left unset
    tp = _strip_optional(tp)
    if tp is Any:
        return _storable(value, keys, problems), value

    def wrong() -> tuple[bool, Any]:
        problems.append((keys, f"should be {_expected(tp)}, not {describe(value)}; write {_example(name, tp, keys)}."))
        return False, None

    if tp is str:
        return (True, value) if isinstance(value, str) else wrong()
    if tp is bool:
        return (True, value) if isinstance(value, bool) else wrong()
    if tp is int:
        return (True, value) if isinstance(value, int) and not isinstance(value, bool) else wrong()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return wrong()
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            return wrong()
        return True, decode(tp, value, keys, problems)
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            return wrong()
        (arg,) = typing.get_args(tp) or (Any,)
        out, ok = [], True
        for i, element in enumerate(value):
            good, decoded = _decode_value(arg, element, keys + (i,), name, problems)
            ok &= good
            out.append(decoded)
        return ok, out
    if origin is dict:
        if not isinstance(value, dict):
            return wrong()
        args = typing.get_args(tp)
        arg = args[1] if len(args) == 2 else Any
        mapping: dict[Any, Any] = {}
        ok = True
        for k, element in value.items():
            good, decoded = _decode_value(arg, element, keys + (k,), k, problems)
            ok &= good
            mapping[k] = decoded
        return ok, mapping
    return True, value  # a type this codec does not check: keep what TOML gave


# ---------------------------------------------------------------------------------------------
# encoding


def to_plain(value: Any) -> Any:
    """A deep, plain copy: dataclasses become dicts (fields in order, then `extra` keys)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        extra = None
        for name in fields_of(type(value)):
            if name == "extra":
                extra = getattr(value, name)
                continue
            out[name] = to_plain(getattr(value, name))
        for k, v in (extra or {}).items():
            out.setdefault(k, to_plain(v))
        return out
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 from True (TOML writes them differently)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _is_empty(value: Any) -> bool:
    return isinstance(value, (str, list, dict)) and len(value) == 0


def omittable(cls: type | None, key: str, value: Any) -> bool:
    """A known field whose value is empty and equal to its default need not be written.

    An optional field (`X | None`) that is None is never written: TOML has no null, and a
    missing key decodes back to None.
    """
    if value is None and cls is not None and key in fields_of(cls):
        tp = fields_of(cls)[key].type
        return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    if cls is None or not _is_empty(value):
        return False
    info = fields_of(cls).get(key)
    return info is not None and not info.required and same(to_plain(info.default), value)


class UnrepresentableError(ValueError):
    """A value TOML cannot hold (None, a set, an object...)."""


def new_item(value: Any, cls: type | None = None, in_array: bool = False) -> Any:
    """A tomlkit item for a plain value; `cls` is the dataclass a dict (or list of dicts) encodes."""
    if isinstance(value, dict):
        if in_array:
            table = tomlkit.inline_table()
            for k, v in value.items():
                if not omittable(cls, k, v):
                    table[k] = new_item(v, _sub_class(cls, k), in_array=True)
            return table
        return new_table(value, cls)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value) and not in_array:
            aot = tomlkit.aot()
            for v in value:
                aot.append(new_table(v, cls))
            for added in aot.body:
                added.trivia.indent = ""  # each new table already ends with a blank line
            return aot
        array = tomlkit.array()
        for v in value:
            array.append(new_item(v, cls, in_array=True))
        if sum(len(v) if isinstance(v, str) else 8 for v in value) > 60 and not in_array:
            array.multiline(True)
        return array
    if isinstance(value, str):
        if "\n" in value:
            return tomlkit.string(value, multiline=True)
        return tomlkit.string(value)
    if not isinstance(value, _TOML_SCALARS):
        raise UnrepresentableError(f"TOML cannot store {value!r}")
    return tomlkit.item(value)


def new_table(value: dict, cls: type | None = None) -> Table:
    """A fresh [table]: plain values first (so none lands under a sub-table header), then tables."""
    table = tomlkit.table()
    later = []
    for key, v in value.items():
        if omittable(cls, key, v):
            continue
        sub = _sub_class(cls, key)
        if isinstance(v, dict) or (v and isinstance(v, list) and all(isinstance(x, dict) for x in v)):
            later.append((key, v, sub))
        else:
            table.append(key, new_item(v, sub))
    if later and len(table):
        table.add(tomlkit.nl())  # a blank line between the values and the first sub-table
    for key, v, sub in later:
        table.append(key, new_item(v, sub))
    if not later:
        table.add(tomlkit.nl())  # every new table section ends with a blank line
    return table


def ends_blank(item: Any) -> bool:
    """Whether an item's text ends with a blank line (so a table after it needs no indent)."""
    if isinstance(item, AoT):
        return ends_blank(item.body[-1]) if item.body else False
    container = item if isinstance(item, Container) else getattr(item, "value", None)
    if isinstance(container, Container):
        body = [v for _, v in container.body if not isinstance(v, Null)]
        if not body:
            return False
        last = body[-1]
        if isinstance(last, Whitespace):
            return "\n" in last.as_string()
        if isinstance(last, (Table, AoT)):
            return ends_blank(last)
        return False
    return False


def _sub_class(cls: type | None, key: str) -> type | None:
    if cls is None:
        return None
    info = fields_of(cls).get(key)
    return item_class(info.type) if info else None


# ---------------------------------------------------------------------------------------------
# merging into an existing document


def merge(table: Any, new: dict, old: Any, cls: type | None) -> None:
    """Make tomlkit `table` hold `new`, changing only keys whose value differs from `old`."""
    old = old if isinstance(old, dict) else {}
    inline = isinstance(table, InlineTable)  # what goes inside {…} must be inline too
    known = fields_of(cls) if cls else {}
    for key in [k for k in table if k not in new]:
        if cls is None or "extra" in known or key in known:
            del table[key]  # removed from `extra` (or a field): a key a class cannot hold stays
    for key, value in new.items():
        previous = old.get(key, _MISSING)
        if previous is not _MISSING and same(previous, value):
            continue  # unchanged since load: leave the text alone (a default stays unwritten)
        present = key in table
        sub = _sub_class(cls, key)
        if not present:
            if not omittable(cls, key, value):
                insert(table, key, new_item(value, sub, in_array=inline))
            continue
        existing = table[key]
        if isinstance(value, dict) and isinstance(existing, (Table, InlineTable)):
            merge(existing, value, previous, sub)
        elif (
            isinstance(existing, AoT) and isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            merge_aot(existing, value, previous if isinstance(previous, list) else None, sub)
        elif isinstance(existing, Array) and isinstance(value, list):
            merge_array(existing, value, previous if isinstance(previous, list) else None, sub)
        elif omittable(cls, key, value) and (value is None or isinstance(existing, (Table, AoT))):
            del table[key]  # None has no TOML form; `key = []` would land under a table header
        else:
            table[key] = new_item(value, sub, in_array=inline or isinstance(existing, (InlineTable, Array)))


def merge_array(array: Array, new: list, old: list | None, cls: type | None = None) -> None:
    """Edit an inline array element by element, so comments beside the others stay."""
    if old is None or len(old) != len(array):
        old = array.unwrap()
    canon = [json.dumps(v, sort_keys=True, default=str) for v in old]
    target = [json.dumps(v, sort_keys=True, default=str) for v in new]
    ops = difflib.SequenceMatcher(None, canon, target, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in reversed(ops):
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for i in reversed(range(i1 + paired, i2)):
            del array[i]
        for offset, value in enumerate(new[j1 + paired : j2]):
            array.insert(i1 + paired + offset, new_item(value, cls, in_array=True))
        for offset in range(paired):  # changed elements: edit in place, keeping their comments
            i, value = i1 + offset, new[j1 + offset]
            if isinstance(value, dict) and isinstance(array[i], InlineTable):
                merge(array[i], value, old[i], cls)
            else:
                array[i] = new_item(value, cls, in_array=True)


def merge_aot(aot: AoT, new: list[dict], old: list | None, cls: type | None) -> None:
    """Update an array of tables in place: items matched by `id` (else by content, then order)."""
    tables = list(aot.body)
    if old is None or len(old) != len(tables):
        old = [t.unwrap() for t in tables]
    pairs = _match(new, old)
    result = []
    for j, value in enumerate(new):
        i = pairs.get(j)
        if i is None:
            result.append(new_table(value, cls))
        else:
            if not same(old[i], value):
                merge(tables[i], value, old[i], cls)
            result.append(tables[i])
    before = [id(t) for t in tables]
    after = [id(t) for t in result]
    if after == before:
        return
    existing = set(before)
    for prev, table in zip(result, result[1:], strict=False):
        if id(table) not in existing and not ends_blank(prev):
            table.trivia.indent = "\n"
    kept = set(after) & existing
    if [x for x in after if x in kept] == [x for x in before if x in kept]:
        # The surviving items keep their order: delete and insert in place.
        for i in reversed(range(len(tables))):
            if before[i] not in kept:
                del aot[i]
        for pos, table in enumerate(result):
            if id(table) not in existing:
                aot.insert(pos, table) if pos < len(aot) else aot.append(table)
        return
    del aot[:]
    for table in result:
        aot.append(table)


def _match(new: list[dict], old: list[dict]) -> dict[int, int]:
    """new index -> old index, by unique string ids when both sides have them."""
    new_ids = [v.get("id") for v in new]
    old_ids = [v.get("id") for v in old]
    if all(isinstance(x, str) for x in new_ids + old_ids) and len(set(old_ids)) == len(old_ids):
        where = {x: i for i, x in enumerate(old_ids)}
        new_set = set(new_ids)
        pairs, used = {}, set()
        for j, x in enumerate(new_ids):
            i = where.get(x)
            if i is not None and i not in used:
                pairs[j] = i
                used.add(i)
        for j in range(len(new)):
            # An item whose id changed in place (a rename) keeps its table and comments.
            if j not in pairs and j < len(old) and j not in used and old_ids[j] not in new_set:
                pairs[j] = j
                used.add(j)
        return pairs
    # No ids (annotations): identical items first, then the rest in order.
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    free: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(old):
        free[canon(v)].append(i)
    pairs, used = {}, set()
    for j, v in enumerate(new):
        slots = free.get(canon(v))
        if slots:
            pairs[j] = slots.pop(0)
            used.add(pairs[j])
    rest_old = iter(i for i in range(len(old)) if i not in used)
    for j in range(len(new)):
        if j not in pairs:
            i = next(rest_old, None)
            if i is None:
                break
            pairs[j] = i
    return pairs


def insert(table: Any, key: str, item: Any) -> None:
    """Add `key` to a table: a plain value right after the last plain value, a table at the end.

    tomlkit's own append puts a plain value after any comment that precedes the first
    sub-table, which separates that comment from the header it describes.
    """
    container = table if isinstance(table, Container) else getattr(table, "value", None)
    if isinstance(table, InlineTable):
        table[key] = item
        return
    if isinstance(item, (Table, AoT)) or not isinstance(container, Container):
        if isinstance(container, Container) and container.body and not ends_blank(container):
            first = item.body[0] if isinstance(item, AoT) and item.body else item
            first.trivia.indent = "\n"
        table[key] = item
        return
    body = container.body
    first_table = len(body)
    for i, (k, v) in enumerate(body):
        if isinstance(v, (Table, AoT)) and not (k is not None and k.is_dotted()):
            first_table = i
            break
    last_value = -1
    for i in range(first_table):
        if not isinstance(body[i][1], (Whitespace, Comment, Null)):
            last_value = i
    if last_value < 0 or first_table == len(body):
        table[key] = item
        return
    try:
        container._insert_at(last_value + 1, key, item)
    except Exception:  # private tomlkit API: fall back to its public placement
        if key not in table:
            table[key] = item
