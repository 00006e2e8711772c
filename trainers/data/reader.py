"""A built dataset's files in the workspace: `<id>.jsonl`, `<id>.heldout.jsonl`, `<id>.stats.json`.

Reading, atomic writing, and the single-record edits the Data pane makes (edit one, delete one),
so every writer goes through one place and a reader never sees a half-written file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sessions.workspace import dataset_path, datasets_dir, heldout_path

SPLITS = ("train", "heldout")


def split_path(workspace: str | Path, dataset_id: str, split: str = "train") -> Path:
    if split == "train":
        return dataset_path(workspace, dataset_id)
    if split == "heldout":
        return heldout_path(workspace, dataset_id)
    raise ValueError(f"split {split!r} is unknown; use 'train' or 'heldout'.")


def stats_path(workspace: str | Path, dataset_id: str) -> Path:
    """`<workspace>/datasets/<id>.stats.json`, beside the data."""
    return dataset_path(workspace, dataset_id).with_suffix(".stats.json")


def is_built(workspace: str | Path, dataset_id: str) -> bool:
    return dataset_path(workspace, dataset_id).is_file()


def has_records(workspace: str | Path, dataset_id: str, split: str = "train") -> bool:
    """The split's file exists and is not empty (a held-out split of 0 examples writes an empty file)."""
    path = split_path(workspace, dataset_id, split)
    return path.is_file() and path.stat().st_size > 0


def built_paths(workspace: str | Path, dataset_ids: list[str], split: str = "train") -> list[Path]:
    """The files of those of `dataset_ids` that are built, in the order given."""
    return [p for p in (split_path(workspace, d, split) for d in dataset_ids) if p.is_file()]


def _atomic_write(path: Path, text: str) -> None:
    from sessions.store import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, backup=False)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file we wrote; a bad line is an error naming the file and line."""
    from sessions.jsonl import read_jsonl as read

    return read(path, fix="rebuild the dataset")


def load_records(workspace: str | Path, dataset_id: str, split: str = "train") -> list[dict[str, Any]]:
    path = split_path(workspace, dataset_id, split)
    if not path.is_file():
        if split == "heldout" and dataset_path(workspace, dataset_id).is_file():
            return []
        raise ValueError(f"Dataset {dataset_id!r} has not been built yet ({path} is missing); build it first.")
    return read_jsonl(path)


def save_records(workspace: str | Path, dataset_id: str, records: list[dict[str, Any]], split: str = "train") -> Path:
    path = split_path(workspace, dataset_id, split)
    write_jsonl(path, records)
    return path


def read_stats(workspace: str | Path, dataset_id: str) -> dict[str, Any] | None:
    path = stats_path(workspace, dataset_id)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_stats(workspace: str | Path, dataset_id: str, stats: dict[str, Any]) -> Path:
    path = stats_path(workspace, dataset_id)
    _atomic_write(path, json.dumps(stats, indent=1, ensure_ascii=False, default=str) + "\n")
    return path


def replace_record(
    workspace: str | Path, dataset_id: str, index: int, record: dict[str, Any], fmt: str, split: str = "train"
) -> None:
    """Put an edited record at `index`; it must still be a valid record of the format."""
    from trainers.data.formats import check_record

    problem = check_record(record, fmt)
    if problem:
        raise ValueError(f"The edited example is not valid: {problem}.")
    records = load_records(workspace, dataset_id, split)
    if not 0 <= index < len(records):
        raise ValueError(f"Dataset {dataset_id!r} has no example {index} in its {split} split.")
    records[index] = record
    save_records(workspace, dataset_id, records, split)


def delete_record(workspace: str | Path, dataset_id: str, index: int, split: str = "train") -> dict[str, Any]:
    records = load_records(workspace, dataset_id, split)
    if not 0 <= index < len(records):
        raise ValueError(f"Dataset {dataset_id!r} has no example {index} in its {split} split.")
    removed = records.pop(index)
    save_records(workspace, dataset_id, records, split)
    return removed


def dataset_ids_on_disk(workspace: str | Path) -> list[str]:
    d = datasets_dir(workspace)
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".jsonl")] for p in d.glob("*.jsonl") if not p.name.endswith(".heldout.jsonl"))
