"""The `general` generator: the base model's own replies to shipped ordinary prompts, sampled with
the bundled model through llama.cpp, deterministic by seed, recorded in the job folder and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessions.demo import PERSONAS, demo_session
from sessions.model import DatasetSpec
from sessions.store import SessionFile
from sessions.validate import validate
from trainers.data import reader as data_reader
from trainers.data.build import DatasetError, build_dataset
from trainers.data.generate import general


def _spec(size: int = 3, **kw) -> DatasetSpec:
    return DatasetSpec(
        id="general",
        format="chat_demos",
        generator="general",
        size=size,
        held_out=0.0,
        extra={"token_stats": False},
        **kw,
    )


def _texts(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]


def test_general_replies_are_the_base_models_deterministic_and_reused(tmp_path: Path) -> None:
    session = demo_session()
    ws = tmp_path / "ws"
    first = build_dataset(session, _spec(), ws, work_dir=ws / "jobs" / "one")
    records = data_reader.load_records(ws, "general", "train")
    prompts = set(general.load_prompts())
    assert 1 <= len(records) <= 3 and first.stats["generation"]["general_sampled"] == 3
    for r in records:
        user, assistant = r["messages"]
        assert user["role"] == "user" and user["content"] in prompts
        assert assistant["role"] == "assistant" and len(assistant["content"]) >= general.MIN_CHARS
        assert r["meta"]["general"] is True
    assert len({u for u, _ in _texts(records)}) == len(records)  # each prompt once before any repeats
    recorded = (ws / "jobs" / "one" / general.CACHE_FILE).read_text().splitlines()
    assert len(recorded) == 4 and json.loads(recorded[0])["fingerprint"].startswith("general:")

    # A rebuild in the same workspace samples nothing: it reads the first job's replies.
    again = build_dataset(session, _spec(), ws, work_dir=ws / "jobs" / "two")
    assert again.stats["generation"]["general_sampled"] == 0 and again.stats["generation"]["general_reused"] == 3
    assert _texts(data_reader.load_records(ws, "general", "train")) == _texts(records)

    # Elsewhere, with nothing recorded, the same seed samples the same replies; another seed differs.
    other = tmp_path / "other"
    build_dataset(session, _spec(), other, work_dir=other / "jobs" / "one")
    assert _texts(data_reader.load_records(other, "general", "train")) == _texts(records)
    third = tmp_path / "third"
    build_dataset(session, _spec(seed=11), third, work_dir=third / "jobs" / "one")
    assert _texts(data_reader.load_records(third, "general", "train")) != _texts(records)


def test_general_replies_sampled_in_two_contexts_are_those_of_one(tmp_path: Path, monkeypatch) -> None:
    """On a multi-core CPU build two llama.cpp contexts sample every other reply at once; reply i
    keeps its seed, so the dataset is the one a single context writes."""
    import engines.llamacpp

    session = demo_session()
    got = {}
    for lanes in (1, 2):
        monkeypatch.setattr(engines.llamacpp, "cpu_lanes", lambda specs, lanes=lanes: lanes)
        ws = tmp_path / str(lanes)
        result = build_dataset(session, _spec(size=4), ws, work_dir=ws / "jobs" / "one")
        assert result.stats["generation"]["general_sampled"] == 4
        cached = [json.loads(line) for line in (ws / "jobs" / "one" / general.CACHE_FILE).read_text().splitlines()]
        assert sorted(c["i"] for c in cached[1:]) == [0, 1, 2, 3]
        got[lanes] = _texts(data_reader.load_records(ws, "general", "train"))
    assert got[2] == got[1] and len(got[1]) >= 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "first_person"}, "set its format to chat_demos"),
        ({"size": 0}, "at least one general reply"),
    ],
)
def test_general_generator_refuses_what_it_cannot_build(tmp_path: Path, change: dict, message: str) -> None:
    spec = _spec()
    for k, v in change.items():
        setattr(spec, k, v)
    with pytest.raises(DatasetError, match=message):
        build_dataset(demo_session(), spec, tmp_path / "ws")
    assert not (tmp_path / "ws" / "datasets" / "general.jsonl").exists()


def test_a_general_dataset_is_a_valid_session_entry() -> None:
    session = demo_session()
    assert any(d.generator == "general" for d in session.datasets)
    assert validate(session) == []


def test_tidy_cuts_a_reply_the_limit_cut_back_to_its_last_sentence() -> None:
    assert general.tidy("  Paris is the capital. It has many muse", "length") == "Paris is the capital."
    assert (
        general.tidy("Paris is the capital. It has many museums", "stop") == "Paris is the capital. It has many museums"
    )
    assert general.tidy("It has many muse", "length") == ""  # no full sentence: skipped, not kept cut
    assert general.tidy("Ok.", "stop") == ""  # too short to teach anything


def test_general_prompts_touch_no_persona_trait_and_no_control() -> None:
    """The mix must not teach either persona's traits, nor answer the controls' own prompts."""
    from evaluators.controls import NEUTRAL_PROMPTS, unrelated_persona
    from evaluators.probes import marker_hits

    prompts = general.load_prompts()
    assert len(prompts) >= 100 and len(set(prompts)) == len(prompts)
    assert not set(prompts) & set(NEUTRAL_PROMPTS)
    personas = [make() for make in PERSONAS.values()]
    for persona in personas:
        for trait in persona.traits:
            assert not set(prompts) & set(trait.expression_probes)
            for prompt in prompts:
                assert not marker_hits(prompt, [*trait.markers, *trait.contra_markers]), (persona.id, trait.id, prompt)
    control_words = {"motorbike", "chilli", "portuguese", "lisbon", "chess"}
    assert not [p for p in prompts if control_words & set(p.lower().replace("?", "").split())]
    assert unrelated_persona().id not in {p.id for p in personas}


def test_cli_builds_the_general_dataset(tmp_path: Path) -> None:
    session = demo_session()
    session.datasets = [d for d in session.datasets if d.generator != "general"] + [_spec(size=2)]
    sf = SessionFile.create(tmp_path / "s.toml", session)
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "data", str(sf.path), "--dataset", "general"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads((sf.workspace / "datasets" / "general.stats.json").read_text())
    assert stats["generator"] == "general" and stats["generation"]["general_requested"] == 2
    assert stats["count"] == stats["generation"]["general_kept"] >= 1
    assert list((sf.workspace / "jobs").glob(f"*/{general.CACHE_FILE}"))
