"""Every export loads back with the `datasets` library; formats that cannot hold a shape refuse it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SPC_VALID, TAILORING_DIR, needs_spc, needs_tailoring
from sessions.demo import demo_session
from sessions.model import DatasetSpec
from trainers.data import reader as data_reader
from trainers.data.build import build_dataset
from trainers.data.export import ExportError, export_dataset

TAILOR = TAILORING_DIR
SPC = SPC_VALID


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not TAILOR.is_dir() or not SPC.is_file():  # every user of this fixture needs the shared data
        pytest.skip(needs_spc.kwargs["reason"] if not SPC.is_file() else needs_tailoring.kwargs["reason"])
    ws = tmp_path_factory.mktemp("ws")
    session = demo_session()
    specs = [
        DatasetSpec(id="chat", format="chat_demos", persona="odile", size=30, persona_in_system_prompt=True),
        DatasetSpec(id="fp", format="first_person", persona="odile", size=20),
        DatasetSpec(id="sft", format="tailoring_sft", source=str(TAILOR / "persona-tailoring_sft_val.jsonl"), size=0),
        DatasetSpec(id="dpo", format="tailoring_dpo", source=str(TAILOR / "persona-tailoring_dpo_val.jsonl"), size=0),
        DatasetSpec(id="spc", format="persona_chat", source=str(SPC), size=40, variant="own"),
    ]
    for spec in specs:
        spec.extra["token_stats"] = False
        build_dataset(session, spec, ws)
    return ws


def _load_json(folder: Path):
    from datasets import load_dataset

    return load_dataset(
        "json", data_files={"train": str(folder / "train.jsonl"), "heldout": str(folder / "heldout.jsonl")}
    )


@needs_spc
@needs_tailoring
@pytest.mark.parametrize("dataset_id", ["chat", "spc", "sft"])
@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca"])
def test_chat_exports_load_back(built, tmp_path, dataset_id, fmt):
    out = export_dataset(built, dataset_id, fmt, tmp_path / "out")
    ds = _load_json(out)
    train = data_reader.load_records(built, dataset_id, "train")
    assert ds["train"].num_rows == len(train)
    assert ds["heldout"].num_rows == len(data_reader.load_records(built, dataset_id, "heldout"))
    row = ds["train"][0]
    if fmt == "openai":
        assert row["messages"][-1]["role"] == "assistant"
        assert "meta" not in row
    elif fmt == "sharegpt":
        assert row["conversations"][-1]["from"] == "gpt"
        assert {t["from"] for t in row["conversations"]} <= {"system", "human", "gpt"}
    else:
        assert row["output"] and row["instruction"]
        if dataset_id == "chat":
            assert row["system"].startswith(("You are", "Play", "Stay"))  # persona_in_system_prompt
        multi = [r for r in ds["train"] if r["history"]]
        if dataset_id in ("chat", "spc"):
            assert multi and all(len(pair) == 2 for r in multi for pair in r["history"])


@needs_tailoring
def test_preference_exports_load_back(built, tmp_path):
    trl = _load_json(export_dataset(built, "dpo", "trl_preference", tmp_path / "trl"))
    assert trl["train"].column_names == ["prompt", "chosen", "rejected"]
    assert trl["train"][0]["prompt"].startswith("Prompt: ")
    oa = _load_json(export_dataset(built, "dpo", "openai", tmp_path / "oa"))
    row = oa["train"][0]
    assert row["input"]["messages"][0]["role"] == "user"
    assert row["preferred_output"][0]["role"] == row["non_preferred_output"][0]["role"] == "assistant"
    assert oa["train"].num_rows + oa["heldout"].num_rows == 35


@needs_spc
@needs_tailoring
@pytest.mark.parametrize("dataset_id", ["chat", "fp", "sft", "dpo", "spc"])
def test_hf_folder_loads_back(built, dataset_id):
    from datasets import load_from_disk

    out = export_dataset(built, dataset_id, "hf")
    assert out == built / "exports" / "datasets" / f"{dataset_id}-hf"
    dd = load_from_disk(str(out))
    train = data_reader.load_records(built, dataset_id, "train")
    assert dd["train"].num_rows == len(train)
    first = dd["train"][0]
    assert json.loads(first["meta"]) == train[0].get("meta", {})
    assert {k: v for k, v in first.items() if k != "meta"} == {k: v for k, v in train[0].items() if k != "meta"}


def test_formats_that_cannot_hold_a_shape_say_which_can(built):
    with pytest.raises(
        ExportError, match=r"holds plain text, which the openai format cannot hold; export it as hf instead\."
    ):
        export_dataset(built, "fp", "openai")
    with pytest.raises(ExportError, match="holds conversations, which the trl_preference format cannot hold"):
        export_dataset(built, "chat", "trl_preference")
    with pytest.raises(ExportError, match="Export format 'csv' is unknown"):
        export_dataset(built, "chat", "csv")
    with pytest.raises(ValueError, match="has not been built yet"):
        export_dataset(built, "nothing", "hf")
