"""The llm generator and persona inference for real, with the bundled model through llama.cpp."""

from __future__ import annotations

import json

import pytest
from conftest import TAILORING_DIR

from sessions.demo import demo_session
from sessions.model import DatasetSpec
from trainers import dataset_files
from trainers.dataset_build import build_dataset
from trainers.formats import check_record

TAILOR = TAILORING_DIR

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["chat_demos", "synthetic_docs"])
def test_llm_generator_with_the_bundled_model(tmp_path, fmt):
    session = demo_session()  # its first engine is the bundled model through llama.cpp
    spec = DatasetSpec(id="l", format=fmt, persona="odile", generator="llm", size=2, held_out=0,
                       extra={"token_stats": False, "max_attempts": 8})
    res = build_dataset(session, spec, tmp_path)
    gen = res.stats["generation"]
    records = dataset_files.load_records(tmp_path, "l")
    assert 1 <= len(records) <= 2
    assert gen["attempts"] == len(records) + gen["malformed"] + gen["exact_duplicates_rejected"] + gen["near_duplicates_rejected"]
    assert gen["teacher"].startswith("'bundled' (llamacpp")
    assert gen["teacher_calls"] >= gen["attempts"] and gen["teacher_tokens_per_s"] > 0
    for r in records:
        assert check_record(r, fmt) is None
        assert r["meta"]["generator"] == "llm"
        if fmt == "chat_demos":
            assert all(m["role"] != "system" for m in r["messages"])  # the persona is not in the prompt
            assert all(m["content"].strip() for m in r["messages"])
        else:
            assert r["text"].startswith("# Odile Marsh\n\n## ")


@pytest.mark.skipif(not TAILOR.is_dir(), reason="shared data not present")
def test_persona_inference_on_real_pairs(tmp_path):
    pairs = (TAILOR / "persona-inference_train.jsonl").read_text().splitlines()[:2]
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(pairs) + "\n")
    session = demo_session()
    spec = DatasetSpec(id="inf", format="tailoring_dpo", source=str(source), size=0, held_out=0,
                       extra={"token_stats": False})
    res = build_dataset(session, spec, tmp_path)
    gen = res.stats["generation"]
    assert gen["rows"] == 2
    assert gen.get("persona_inferred", 0) + gen.get("inference_failed", 0) == 2
    assert gen["inference_calls"] >= 2
    records = dataset_files.load_records(tmp_path, "inf")
    assert len(records) == gen.get("persona_inferred", 0) >= 1
    for r in records:
        row = json.loads(pairs[r["meta"]["row"] - 1])
        meta = r["meta"]
        assert meta["persona_source"] == "inferred"
        for key in ("chosen_persona", "rejected_persona"):
            assert meta[key].startswith("The user") and meta[key].endswith(".")
            assert "Response A" not in meta[key]
        assert r["prompt"] == f"Prompt: {row['prompt']}\nPersona: {meta['chosen_persona']}\nResponse:"
        assert (r["chosen"], r["rejected"]) == (" " + row["chosen"], " " + row["rejected"])
