"""The measured recipe for any persona (sessions.demo.add_recipe): the datasets, run and traits
evaluation the demo measured, added to a user's own session, through the core and through
`persona-tui persona --recipe` (the Personas pane's `t` is in test_app_personas)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cli_runner import persona_tui as _cli

from sessions import demo
from sessions.model import DatasetSpec, Session
from sessions.store import SessionFile

ROOT = Path(__file__).resolve().parent.parent


def test_the_recipe_added_to_a_session_is_what_the_demo_measured():
    """Jun, written apart from Odile, in a session of its own: what `add_recipe` adds is the second
    persona's row of docs/training.md (demo_session("jun")), less the demo's extra datasets and evals."""
    session = Session(name="mine", personas=[demo.second_persona()])
    added = demo.add_recipe(session, "jun")
    measured = demo.demo_session("jun")
    assert session.engines == measured.engines
    assert session.datasets == [d for d in measured.datasets if d.format != "synthetic_docs"]
    assert session.runs == measured.runs
    run = session.runs[0]
    assert (run.training.learning_rate, run.training.max_steps, run.lora.r, run.lora.alpha) == (1e-3, 80, 16, 32)
    assert run.datasets == ["jun-chat", "jun-first-person", "general"]
    assert session.evals == [e for e in measured.evals if e.kind == "traits"]
    assert session.evals[0].models == ["bundled", "export:jun-chat-lora:lora"]
    assert len(added) == 6 and added[-2].startswith("run jun-chat-lora: LoRA r 16, alpha 32, lr 0.001 cosine")


def test_a_second_persona_shares_the_general_replies_and_a_clash_adds_nothing():
    session = demo.demo_session("odile")
    session.personas.append(demo.second_persona())
    added = demo.add_recipe(session, "jun")
    assert [d.id for d in session.datasets].count("general") == 1
    assert not any(line.startswith(("dataset general", "engine")) for line in added)
    assert session.runs[-1].datasets == ["jun-chat", "jun-first-person", "general"]

    before = copy.deepcopy(session)
    with pytest.raises(ValueError, match=r"run 'jun-chat-lora' exists; eval 'jun-traits' exists"):
        demo.add_recipe(session, "jun")
    assert session == before
    with pytest.raises(ValueError, match=r"no persona 'bob' \(personas: odile, jun\)"):
        demo.add_recipe(session, "bob")

    other = Session(name="x", personas=[demo.second_persona()])
    other.datasets.append(DatasetSpec(id="general", format="first_person", persona="jun"))
    with pytest.raises(ValueError, match=r"dataset 'general' exists and is not the recipe's \(first_person"):
        demo.add_recipe(other, "jun")
    assert len(other.datasets) == 1 and not other.runs and not other.evals and not other.engines


def test_cli_adds_the_recipe_and_says_what_to_run_next(tmp_path):
    path = tmp_path / "mine.toml"
    SessionFile.create(path, Session(name="mine", personas=[demo.second_persona()]))
    done = _cli("persona", str(path), "--recipe", "jun")
    assert done.returncode == 0, done.stderr
    saved = SessionFile.load(path).session
    assert saved.runs == demo.demo_session("jun").runs
    assert [e.id for e in saved.evals] == ["jun-traits"]
    assert f"persona-tui train {path} --run jun-chat-lora" in done.stdout
    assert f"persona-tui data {path} --dataset general" in done.stdout
    assert f"persona-tui eval {path} --eval jun-traits" in done.stdout

    bytes_before = path.read_bytes()
    again = _cli("persona", str(path), "--recipe", "jun")
    assert again.returncode == 2 and "run 'jun-chat-lora' exists" in again.stderr and "Traceback" not in again.stderr
    assert path.read_bytes() == bytes_before
    missing = _cli("persona", str(path), "--recipe", "bob")
    assert missing.returncode == 2 and "has no persona 'bob' (personas: jun)" in missing.stderr


def test_what_a_persona_lacks_before_its_recipe_can_show_anything(tmp_path):
    assert demo.recipe_gaps(demo.second_persona()) == []
    bare = demo.second_persona()
    bare.traits[0].expression_probes = []
    bare.traits[1].markers = []
    gaps = demo.recipe_gaps(bare)
    assert len(gaps) == 2
    assert f"1 of Jun Arkwright's traits have no knowledge or expression probes ({bare.traits[0].id})" in gaps[0]
    assert f"({bare.traits[1].id}): their expression cannot be scored" in gaps[1]

    path = tmp_path / "new.toml"
    assert _cli("new", str(path)).returncode == 0
    done = _cli("persona", str(path), "--recipe", "my-persona")
    assert done.returncode == 0, done.stderr
    assert "Before you build: My persona has no traits yet" in done.stdout
