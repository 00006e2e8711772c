"""The one JSON Lines reader: datasets, run data, imported rows, evaluation outputs, chat histories.

Each caller decides only what a bad line means for it: an error naming the file and line (files
the project wrote, where a bad line is damage), or a row reported and skipped (files people bring,
outputs of a job still running). A job's events are followed by offset in `supervisor.jobs`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NOT_OBJECT = "is not a JSON object"


class JsonlLineError(ValueError):
    """A line of a JSON Lines file that is not one JSON object; the message names file and line."""


def iter_jsonl(
    path: str | os.PathLike[str],
    bad: Callable[[int, str], None] | None = None,
    fix: str = "fix or remove that line",
    partial_tail: bool = False,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each JSON-object line of `path`; blank lines are skipped.

    A line that is not JSON, or JSON but not an object, goes to `bad(line, reason)` and is
    skipped; without `bad` it raises JsonlLineError ("PATH line N is not valid JSON (...); FIX.").
    With `partial_tail`, a last line without its newline that does not parse is taken for a
    record still being written and skipped in silence. Opening the file may raise OSError.
    """
    path = Path(path)
    with open(path, encoding=encoding, errors=errors) as f:
        previous: tuple[int, str] | None = None
        try:
            for n, line in enumerate(f, start=1):
                if previous is not None:
                    yield from _parsed(path, *previous, bad, fix, last=False)
                previous = (n, line)
        except UnicodeDecodeError:
            raise JsonlLineError(
                f"{path} is not UTF-8 text (after line {previous[0] if previous else 0}); save it as UTF-8."
            ) from None
        if previous is not None:
            n, line = previous
            yield from _parsed(path, n, line, bad, fix, last=partial_tail and not line.endswith("\n"))


def read_jsonl(
    path: str | os.PathLike[str], fix: str = "fix or remove that line", **options: Any
) -> list[dict[str, Any]]:
    """Every object of `path` (see iter_jsonl for `bad`, `partial_tail`, `encoding`)."""
    return [obj for _, obj in iter_jsonl(path, fix=fix, **options)]


def _parsed(
    path: Path, n: int, line: str, bad: Callable[[int, str], None] | None, fix: str, last: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    if not line.strip():
        return
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        if last:
            return
        reason = f"is not valid JSON ({e.msg} at column {e.colno})"
    else:
        if isinstance(obj, dict):
            yield n, obj
            return
        reason = NOT_OBJECT
    if bad is None:
        raise JsonlLineError(f"{path} line {n} {reason}; {fix.rstrip('.')}.")
    bad(n, reason)
