"""The demo session and the workspace layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.probes import marker_hits
from sessions import workspace
from sessions.demo import PERSONAS, RECIPE_TRAINING, demo_session, write_demo_session
from sessions.store import SessionFile
from sessions.validate import validate
from sessions.workspace import UnsafeIdError, dataset_path, heldout_path, jobs_dir, make_id, safe_id, workspace_for


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_demo_session_is_valid_and_rich(persona_id: str) -> None:
    session = demo_session(persona_id)
    assert validate(session) == []
    (persona,) = session.personas
    assert persona.name and persona.summary and persona.style
    assert len(persona.facts) >= 6 and len(persona.examples) >= 4
    assert 4 <= len(persona.traits) <= 6
    assert len({t.id for t in persona.traits}) == len(persona.traits)
    # Enough evidence to decide (issue 12): at least twelve knowledge probes per trait; eight open
    # prompts per trait, 12 samples each in the full demo, give 96 replies per trait per model.
    for trait in persona.traits:
        assert trait.text.startswith("I ")
        assert len(trait.knowledge_probes) >= 12
        for probe in trait.knowledge_probes:
            assert probe.question.endswith("?") and probe.affirm != probe.deny
            assert len(probe.affirm.split()) <= 12 and len(probe.deny.split()) <= 12  # short answers
            # Matched length (exactly matched in the bundled model's tokens; bench/knowledge_bias.py
            # measures it); in characters, within a third.
            assert abs(len(probe.affirm) - len(probe.deny)) <= max(len(probe.affirm), len(probe.deny)) / 3, probe
        assert len(trait.expression_probes) >= 8 and len(set(trait.expression_probes)) == len(trait.expression_probes)
        assert trait.markers and trait.contra_markers


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_expression_probes_do_not_name_their_trait(persona_id: str) -> None:
    """An expression probe leaves room for the trait; it must not mention it outright."""
    for trait in demo_session(persona_id).personas[0].traits:
        for prompt in trait.expression_probes:
            for marker in [*trait.markers, *trait.contra_markers]:
                assert not marker_hits(prompt, [marker]), (trait.id, prompt, marker)


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_demo_prompts_are_distinct_across_traits(persona_id: str) -> None:
    persona = demo_session(persona_id).personas[0]
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
    "bad",
    ["../x", "/abs", "a/b", "a\\b", "a\x00b", ".", "..", "", "CON", "lpt1.log", "x" * 65, ".hidden", "-rf", "a b", "é"],
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


def test_the_second_persona_is_independent_of_the_first_and_of_the_control() -> None:
    """The recipe is a default only if it takes on a character it was not tuned on: a second
    persona with other traits, names and prompts, and neither overlaps the unrelated-persona control."""
    from evaluators.controls import unrelated_persona

    odile, jun, control = PERSONAS["odile"](), PERSONAS["jun"](), unrelated_persona()
    assert len({odile.id, jun.id, control.id}) == 3
    ids = [{t.id for t in p.traits} for p in (odile, jun, control)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for a, b in ((odile, jun), (jun, odile)):
        prompts = [p for t in a.traits for p in t.expression_probes]
        assert not set(prompts) & {p for t in b.traits for p in t.expression_probes}
        for trait in b.traits:  # b's markers do not fire on a's prompts, so a's scores are a's own
            assert not [p for p in prompts if marker_hits(p, trait.markers)], (a.id, trait.id)


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_probe_answers_match_in_tokens(persona_id: str) -> None:
    """Affirm and deny have the same number of tokens for the bundled model, so neither the summed
    nor the per-token score can prefer one for its length. Counted two ways: as the scorer sees an
    answer (the tokens of chat prompt + answer past the prompt's, where the answer follows a
    newline) and after a space (as inside a sentence); the first word can differ between them."""
    from engines.models import load_tokenizer

    tok = load_tokenizer("bundled:smollm2-135m-instruct")

    def as_scored(question: str, answer: str) -> int:
        messages = [{"role": "user", "content": question}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p, full = tok(prompt)["input_ids"], tok(prompt + answer)["input_ids"]
        shared = next((i for i, (x, y) in enumerate(zip(p, full)) if x != y), min(len(p), len(full)))
        return len(full) - shared

    def after_space(answer: str) -> int:
        return len(tok(" " + answer, add_special_tokens=False)["input_ids"])

    for trait in PERSONAS[persona_id]().traits:
        for k in trait.knowledge_probes:
            scored = [as_scored(k.question, a) for a in (k.affirm, k.deny)]
            spaced = [after_space(a) for a in (k.affirm, k.deny)]
            assert scored[0] == scored[1] and spaced[0] == spaced[1], (trait.id, k.affirm, k.deny, scored, spaced)


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_demo_run_is_the_recipe_with_general_replies_mixed_in(persona_id: str) -> None:
    session = demo_session(persona_id)
    (run,) = session.runs
    general = [d for d in session.datasets if d.generator == "general"]
    assert len(general) == 1 and general[0].id in run.datasets and general[0].format == "chat_demos"
    assert {f"{persona_id}-chat", f"{persona_id}-first-person"} <= set(run.datasets)
    for key, value in RECIPE_TRAINING.items():  # explicit, not left to `auto`
        assert getattr(run.training, key) == value
    assert run.training.precision != "auto" and run.training.batch_size * run.training.grad_accum == 8
    assert not any(d.generator == "general" for d in demo_session(persona_id, general_replies=0).datasets)


def test_demo_sizes_give_enough_evidence_full_and_stay_small_quick() -> None:
    """Issue 12: >= 30 expression replies per trait per model in the full demo; quick asks fewer
    prompts (a size, not a skipped stage) but every trait still gets at least one."""
    from evaluators.demo import FULL, QUICK

    for trait in demo_session().personas[0].traits:
        prompts = len(trait.expression_probes)
        # 96 (docs/evaluation.md): the issue asks >= 30; a rise to ~10% of replies passes Holm over
        # five traits about half the time at 64 replies and most of the time at 96.
        assert (FULL["prompts_per_trait"] or prompts) * FULL["trait_samples"] >= 96
        assert 1 <= min(QUICK["prompts_per_trait"] or prompts, prompts) < prompts
    assert QUICK["general"] >= 1 and QUICK["train_steps"] >= 1 and QUICK["examples"] < FULL["examples"]


@pytest.mark.parametrize("persona_id", sorted(PERSONAS))
def test_demo_probes_do_not_repeat_the_demo_training_data(persona_id: str) -> None:
    """Issue 12: a probe sentence seen word for word in training tests memory of that line, not
    knowledge of the trait. Builds the demo's template datasets (what `persona-tui demo` trains
    on) and checks every question, answer and open prompt against them."""
    import copy
    import re

    from evaluators.probe_writer import training_repeats
    from trainers.data.formats import format_module, record_text
    from trainers.data.generate import template

    session = demo_session(persona_id)
    persona = session.personas[0]
    texts = []
    for spec in session.datasets:
        if spec.generator == "template":
            options = {"persona_in_system_prompt": spec.persona_in_system_prompt, "system_prompt": ""}
            result = template.generate(format_module(spec.format), persona, spec.size, spec.seed, options)
            assert len(result.records) == spec.size
            texts += [record_text(r) for r in result.records]
    assert training_repeats(persona, texts) == []
    # The check can fail: an answer copied from a sentence of the data is found.
    seen = [s for t in texts for s in re.split(r"(?<=[.!?])\s+|\n", t) if len(s.split()) >= 3 and s.endswith(".")]
    planted = copy.deepcopy(persona)
    trait = planted.traits[0]
    trait.knowledge_probes[0].affirm = seen[len(seen) // 2]
    assert [where for where, _ in training_repeats(planted, texts)] == [f"trait {trait.id!r} knowledge probe 1 affirm"]
