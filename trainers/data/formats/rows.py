"""Reading imported CSV and JSONL files row by row, keeping each row's line number.

Imports report every broken row by the physical line where it starts (what an editor shows), and
go on with the rest — or, with `strict`, refuse the file at the first broken row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Synthetic-Persona-Chat's conversations are long multi-line cells.
csv.field_size_limit(16 * 1024 * 1024)


class ImportFileError(ValueError):
    """A file cannot be imported; the message names the file, the line and the fix."""


@dataclass
class BrokenRows:
    """Rows an import skipped, as (line, reason); `strict` turns the first one into an error."""

    path: Path
    strict: bool = False
    rows: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        if self.strict:
            raise ImportFileError(
                f"{self.path}, line {line}: {reason}; fix or remove the row, or import without strict "
                "to skip broken rows."
            )
        self.rows.append((line, reason))

    def as_list(self) -> list[dict[str, Any]]:
        return [{"line": line, "reason": reason} for line, reason in self.rows]


def check_file(path: Path) -> Path:
    if not str(path):
        raise ImportFileError("The dataset has no source file; set its source to a CSV or JSONL path.")
    if not path.is_file():
        raise ImportFileError(f"The source file {path} does not exist; check the dataset's source path.")
    return path


def csv_records(path: Path, required: tuple[str, ...], broken: BrokenRows) -> Iterator[tuple[int, dict[str, str]]]:
    """(start line, row by lower-cased column name) for each well-formed CSV record."""
    check_file(path)
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path} is empty; it needs a header row with {', '.join(required)}.") from None
        except csv.Error as e:
            raise ImportFileError(f"{path}, line 1: the header row cannot be read as CSV ({e}).") from None
        columns = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ImportFileError(
                f"{path} has no column {missing[0]!r} (its columns are {', '.join(repr(c) for c in columns)}); "
                f"the file needs {', '.join(repr(c) for c in required)}."
            )
        end = reader.line_num
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                end = reader.line_num
                broken.add(start, f"the row cannot be read as CSV ({e})")
                continue
            end = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # a blank line between records
            if len(row) != len(columns):
                broken.add(start, f"the row has {len(row)} fields but the header has {len(columns)}")
                continue
            yield start, dict(zip(columns, row))


def jsonl_records(path: Path, broken: BrokenRows) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) for each JSON object line; blank lines are skipped, others reported."""
    from sessions.jsonl import NOT_OBJECT, iter_jsonl

    def bad(n: int, reason: str) -> None:
        broken.add(n, "the line is JSON but not an object" if reason == NOT_OBJECT else f"the line {reason}")

    check_file(path)
    yield from iter_jsonl(path, bad=bad, encoding="utf-8-sig", errors="replace")


def table_records(path: Path, required: tuple[str, ...], broken: BrokenRows) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSONL or CSV by extension (.csv is CSV, anything else JSON lines)."""
    if path.suffix.lower() == ".csv":
        yield from csv_records(path, required, broken)
    else:
        yield from jsonl_records(path, broken)
