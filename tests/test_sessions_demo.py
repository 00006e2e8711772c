"""The demo session and the workspace layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.probes import marker_hits
from sessions import workspace
from sessions.demo import demo_session, write_demo_session
from sessions.store import SessionFile
from sessions.validate import validate
from sessions.workspace import UnsafeIdError, dataset_path, heldout_path, jobs_dir, make_id, safe_id, workspace_for


def test_demo_session_is_valid_and_rich() -> None:
    session = demo_session()
    assert validate(session) == []
    (persona,) = session.personas
    assert persona.name and persona.summary and persona.style
    assert len(persona.facts) >= 6 and len(persona.examples) >= 4
    assert 4 <= len(persona.traits) <= 6
    assert len({t.id for t in persona.traits}) == len(persona.traits)
    # Enough evidence to decide (issue 12): six paired probes per trait is the fewest on which an
    # exact McNemar test can reach p < 0.05; eight open prompts per trait, 4 samples each in the
    # full demo, give 32 replies per trait per model.
    assert sum(len(t.knowledge_probes) for t in persona.traits) >= 12
    for trait in persona.traits:
        assert trait.text.startswith("I ")
        assert len(trait.knowledge_probes) >= 6
        for probe in trait.knowledge_probes:
            assert probe.question.endswith("?") and probe.affirm != probe.deny
            assert len(probe.affirm.split()) <= 12 and len(probe.deny.split()) <= 12  # short answers
            # Matched length (exactly matched in the bundled model's tokens; bench/knowledge_bias.py
            # measures it); in characters, within a third.
            assert abs(len(probe.affirm) - len(probe.deny)) <= max(len(probe.affirm), len(probe.deny)) / 3, probe
        assert len(trait.expression_probes) >= 8 and len(set(trait.expression_probes)) == len(trait.expression_probes)
        assert trait.markers and trait.contra_markers


def test_expression_probes_do_not_name_their_trait() -> None:
    """An expression probe leaves room for the trait; it must not mention it outright."""
    for trait in demo_session().personas[0].traits:
        for prompt in trait.expression_probes:
            for marker in [*trait.markers, *trait.contra_markers]:
                assert not marker_hits(prompt, [marker]), (trait.id, prompt, marker)


def test_demo_prompts_are_distinct_across_traits() -> None:
    persona = demo_session().personas[0]
    prompts = [p for t in persona.traits for p in t.expression_probes]
    questions = [k.question for t in persona.traits for k in t.knowledge_probes]
    assert len(set(prompts)) == len(prompts) and len(set(questions)) == len(questions)


def test_write_demo_session_writes_once_then_reuses(tmp_path: Path) -> None:
    path = write_demo_session(tmp_path / "demo")
    assert path == tmp_path / "demo" / "demo.toml"
    text = path.read_text()
    assert text.startswith("# persona-tui demo session") and "\nschema = 1\n" in text
    sf = SessionFile.load(path)
    assert sf.session == demo_session()
    assert sf.workspace == tmp_path / "demo" / "demo"
    sf.session.personas[0].name = "Odile, edited"
    sf.save()
    assert write_demo_session(tmp_path / "demo") == path
    assert SessionFile.load(path).session.personas[0].name == "Odile, edited"


def test_workspace_layout(tmp_path: Path) -> None:
    ws = workspace_for(tmp_path / "my.toml")
    assert ws == tmp_path / "my"
    assert workspace_for(tmp_path / "plain") == tmp_path / "plain.workspace"
    assert dataset_path(ws, "odile-chat") == ws / "datasets" / "odile-chat.jsonl"
    assert heldout_path(ws, "odile-chat") == ws / "datasets" / "odile-chat.heldout.jsonl"
    assert jobs_dir(ws) == ws / "jobs"
    assert workspace.job_path(ws, "train-1") == ws / "jobs" / "train-1"
    assert not ws.exists()  # path functions create nothing


@pytest.mark.parametrize(
    "bad", ["../x", "/abs", "a/b", "a\\b", "a\x00b", ".", "..", "", "CON", "lpt1.log", "x" * 65, ".hidden", "-rf", "a b", "é"]
)
def test_unsafe_ids_are_refused_by_path_functions(tmp_path: Path, bad: str) -> None:
    assert workspace.id_problem(bad)
    for fn in (dataset_path, heldout_path, workspace.job_path):
        with pytest.raises(UnsafeIdError, match="use letters, digits"):
            fn(tmp_path, bad)


def test_heldout_suffix_cannot_collide() -> None:
    with pytest.raises(UnsafeIdError, match="held-out file"):
        dataset_path("ws", "x.heldout")


@pytest.mark.parametrize("good", ["a", "odile-chat", "run_2", "v1.2", "A" * 64, "0"])
def test_safe_ids_pass(good: str) -> None:
    assert safe_id(good) == good and workspace.id_problem(good) is None


def test_make_id_is_safe_readable_and_unique() -> None:
    assert make_id("I love to ski.") == "i-love-to-ski"
    assert make_id("Café au lait!", taken=["cafe-au-lait"]) == "cafe-au-lait-2"
    assert make_id("../../etc", fallback="persona") == "etc"
    assert make_id("!!!", fallback="persona") == "persona"
    assert workspace.id_problem(make_id("x" * 300)) is None
