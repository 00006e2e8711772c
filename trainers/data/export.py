"""Exporting a built dataset for other tools.

| format | file(s) | record |
|---|---|---|
| `openai` | `train.jsonl`, `heldout.jsonl` | OpenAI fine-tuning chat: `{"messages": [...]}`; preference pairs in OpenAI's DPO shape `{"input": {"messages"}, "preferred_output", "non_preferred_output"}` |
| `sharegpt` | same | `{"conversations": [{"from": "system"/"human"/"gpt", "value": ...}]}` |
| `alpaca` | same | `{"instruction", "input", "output", "system", "history": [[user, assistant], ...]}` |
| `trl_preference` | same | TRL's preference shape `{"prompt", "chosen", "rejected"}` |
| `hf` | a folder | `datasets.DatasetDict` (`train`, `heldout`) written by `save_to_disk`; `meta` kept as a JSON string |

A format that cannot hold a dataset's shape (plain text as a chat, a conversation as a
preference pair) is refused with a sentence naming a format that can. `meta` is dropped from the
JSON exports (it is ours, not theirs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainers.data import reader as data_reader
from trainers.data.formats import shape_of_record, to_messages

EXPORT_FORMATS = ("openai", "sharegpt", "alpaca", "trl_preference", "hf")
_CAN = {
    "openai": ("messages", "prompt_completion_chat", "prompt_completion", "preference"),
    "sharegpt": ("messages", "prompt_completion_chat", "prompt_completion"),
    "alpaca": ("messages", "prompt_completion_chat", "prompt_completion"),
    "trl_preference": ("preference",),
    "hf": ("messages", "prompt_completion_chat", "prompt_completion", "preference", "text"),
}
_SHARE_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


class ExportError(ValueError):
    """A dataset cannot be exported as asked; one sentence with the fix."""


def export_dir(workspace: str | Path, dataset_id: str, fmt: str) -> Path:
    """Default place: `<workspace>/exports/datasets/<id>-<format>/`."""
    return Path(workspace) / "exports" / "datasets" / f"{dataset_id}-{fmt}"


def _openai(r: dict[str, Any]) -> dict[str, Any]:
    if shape_of_record(r) == "preference":
        return {
            "input": {"messages": [{"role": "user", "content": str(r["prompt"])}]},
            "preferred_output": [{"role": "assistant", "content": str(r["chosen"]).strip()}],
            "non_preferred_output": [{"role": "assistant", "content": str(r["rejected"]).strip()}],
        }
    return {"messages": to_messages(r)}


def _sharegpt(r: dict[str, Any]) -> dict[str, Any]:
    return {"conversations": [{"from": _SHARE_ROLE[m["role"]], "value": m["content"]} for m in to_messages(r) or []]}


def _alpaca(r: dict[str, Any]) -> dict[str, Any]:
    msgs = to_messages(r) or []
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs if m["role"] != "system"]
    # The last user message is the instruction, the last assistant message the output; earlier
    # user/assistant pairs become history (LLaMA-Factory's alpaca extension).
    output = turns[-1]["content"] if turns and turns[-1]["role"] == "assistant" else ""
    rest = turns[:-1]
    instruction = rest[-1]["content"] if rest and rest[-1]["role"] == "user" else ""
    rest = rest[:-1] if instruction else rest
    history: list[list[str]] = []
    pending_user = ""
    for m in rest:
        if m["role"] == "user":
            if pending_user:
                history.append([pending_user, ""])
            pending_user = m["content"]
        else:
            history.append([pending_user, m["content"]])
            pending_user = ""
    if pending_user:
        history.append([pending_user, ""])
    return {"instruction": instruction, "input": "", "output": output, "system": system, "history": history}


def _trl_preference(r: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}


_CONVERT = {"openai": _openai, "sharegpt": _sharegpt, "alpaca": _alpaca, "trl_preference": _trl_preference}


def _refuse(dataset_id: str, fmt: str, shape: str) -> ExportError:
    can = [f for f in EXPORT_FORMATS if shape in _CAN[f]]
    what = {
        "text": "plain text",
        "messages": "conversations",
        "prompt_completion_chat": "conversations",
        "prompt_completion": "prompt-completion pairs",
        "preference": "preference pairs",
    }.get(shape, shape)
    return ExportError(
        f"Dataset {dataset_id!r} holds {what}, which the {fmt} format cannot hold; export it as "
        f"{' or '.join(can)} instead."
    )


def export_dataset(workspace: str | Path, dataset_id: str, fmt: str, out: str | Path | None = None) -> Path:
    """Write the train and held-out splits of a built dataset in `fmt`; return the output folder."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Export format {fmt!r} is unknown; use one of {', '.join(EXPORT_FORMATS)}.")
    splits = {s: data_reader.load_records(workspace, dataset_id, s) for s in data_reader.SPLITS}
    first = next((r for rs in splits.values() for r in rs), None)
    if first is None:
        raise ExportError(f"Dataset {dataset_id!r} has no examples to export; build it first.")
    shape = shape_of_record(first)
    if shape not in _CAN[fmt]:
        raise _refuse(dataset_id, fmt, shape)
    out_dir = Path(out) if out else export_dir(workspace, dataset_id, fmt)
    if fmt == "hf":
        return _export_hf(splits, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    convert = _CONVERT[fmt]
    for split, records in splits.items():
        rows = []
        for r in records:
            if shape_of_record(r) != shape:
                raise ExportError(f"Dataset {dataset_id!r} mixes record shapes; rebuild it from one format.")
            rows.append(convert(r))
        data_reader.write_jsonl(out_dir / f"{split}.jsonl", rows)
    return out_dir


def _export_hf(splits: dict[str, list[dict[str, Any]]], out_dir: Path) -> Path:
    from datasets import Dataset, DatasetDict

    dd = {}
    for split, records in splits.items():
        rows = []
        for r in records:
            row = {k: v for k, v in r.items() if k != "meta"}
            row["meta"] = json.dumps(r.get("meta", {}), ensure_ascii=False)
            rows.append(row)
        if rows:
            dd[split] = Dataset.from_list(rows)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    DatasetDict(dd).save_to_disk(str(out_dir))
    return out_dir
