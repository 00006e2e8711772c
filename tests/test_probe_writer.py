"""The offline probe writer: probes from any persona's traits and facts, reviewed before they are
kept, never repeating the training data; through the core and through `persona-tui persona`."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import persona_tui as _cli

from evaluators import probe_writer
from evaluators.probes import marker_hits
from sessions.model import KnowledgeProbe, Persona, Session, Trait
from sessions.store import SessionFile
from sessions.validate import validate

ROOT = Path(__file__).resolve().parent.parent


def _persona() -> Persona:
    return Persona(
        id="ada",
        name="Ada",
        facts=["I repair clocks in a workshop by the station.", "I have two sisters."],
        traits=[
            Trait(id="clocks", text="I repair old clocks for a living.", markers=["clock", "workshop"]),
            Trait(
                id="cycles",
                text="My bicycle is my only transport.",
                markers=["bicycle", "ride"],
                knowledge_probes=[KnowledgeProbe("Do you drive?", "No, I ride my bicycle.", "Yes, I drive a van.")],
            ),
        ],
    )


def test_second_person():
    assert probe_writer.second_person("I keep three hives on my roof.") == "you keep three hives on your roof"
    assert probe_writer.second_person("My bicycle is my only transport.") == "your bicycle is your only transport"
    assert probe_writer.second_person("I'm sixty-seven and I am retired!") == "you're sixty-seven and you are retired"


def test_write_probes_from_traits_and_facts():
    persona = _persona()
    before = [len(t.knowledge_probes) for t in persona.traits]
    clocks, cycles = probe_writer.write_probes(persona, knowledge=6, expression=8)
    assert [len(t.knowledge_probes) for t in persona.traits] == before  # nothing kept yet
    assert len(clocks.knowledge) == 6 and len(clocks.expression) == 8
    assert len({k.question for k in clocks.knowledge}) == 6
    # The trait sentence and the fact that shares a word with it ("repair", "clocks").
    assert any("you repair old clocks for a living" in k.question for k in clocks.knowledge)
    assert any("you repair clocks in a workshop by the station" in k.question for k in clocks.knowledge)
    assert not any("sisters" in k.question for k in clocks.knowledge)
    for k in clocks.knowledge + cycles.knowledge:
        assert k.affirm != k.deny and abs(len(k.affirm.split()) - len(k.deny.split())) <= 1
    assert len(cycles.expression) == 8
    for p in clocks.expression:
        assert not marker_hits(p, ["clock", "workshop"])
    # Kept: the persona is valid and now has the probes.
    assert probe_writer.apply(persona, [clocks, cycles]) == 6 + 8 + 6 + 8
    assert len(persona.trait("cycles").knowledge_probes) == 7
    assert validate(Session(name="s", personas=[persona])) == []


def test_training_repeats_finds_probe_sentences_in_the_data(tmp_path):
    persona = _persona()
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Do you drive?"},
                    {"role": "assistant", "content": "Well. No, I ride my bicycle."},
                ]
            }
        )
        + "\n"
    )
    found = probe_writer.training_repeats(persona, [data])
    assert found == [
        ("trait 'cycles' knowledge probe 1 question", "do you drive?"),
        ("trait 'cycles' knowledge probe 1 affirm", "no, i ride my bicycle."),
    ]
    assert probe_writer.training_repeats(persona, ["Something else entirely, said once."]) == []


def test_cli_shows_then_keeps_probes(tmp_path):
    path = tmp_path / "s.toml"
    SessionFile.create(path, Session(name="s", personas=[_persona()]))
    shown = _cli("persona", str(path), "--probes", "ada", "--per-trait", "3")
    assert shown.returncode == 0, shown.stderr
    assert "[clocks]" in shown.stdout and "knowledge 3:" in shown.stdout and "Nothing was changed" in shown.stdout
    assert len(SessionFile.load(path).session.personas[0].trait("clocks").knowledge_probes) == 0
    kept = _cli("persona", str(path), "--probes", "ada", "--per-trait", "3", "--keep")
    assert kept.returncode == 0, kept.stderr
    clocks = SessionFile.load(path).session.personas[0].trait("clocks")
    assert len(clocks.knowledge_probes) == 3 and len(clocks.expression_probes) == 8
    missing = _cli("persona", str(path), "--probes", "bob")
    assert missing.returncode == 2 and "has no persona 'bob'" in missing.stderr and "Traceback" not in missing.stderr


# ----------------------------------------------------------------------------- by a teacher


def _teacher_reply(body):
    """A teacher at a real HTTP endpoint that writes probes for whichever trait it is asked about,
    with one bad probe of each kind among good ones (the checks must drop exactly those)."""
    from fake_openai_server import last_user_text

    ask = last_user_text(body)
    trait = ask.split("The trait to test: ", 1)[1].split("\n", 1)[0].rstrip(".")
    topic = "clocks" if "clocks" in trait else "bicycle"
    good = [
        {
            "question": f"What do you do about {topic}, question {i}?",
            "affirm": f"I love my {topic}, always.",
            "deny": f"I never bother with {topic}.",
        }
        for i in range(3)
    ]
    bad = [
        {"question": "Same?", "affirm": "Yes indeed.", "deny": "yes  indeed."},  # identical answers
        {"question": "Long?", "affirm": "Yes.", "deny": "No, not at all, never in my whole life."},  # lengths
        {"question": "", "affirm": "Yes.", "deny": "No."},
    ]  # empty question
    prompts = [
        "What did you do this morning?",
        f"Do you like your {topic}?" if topic == "bicycle" else "Tell me about your workshop.",
        "What do you do on a Sunday?",
    ]
    return json.dumps({"knowledge": good + bad, "expression": prompts})


def _teacher_session(tmp_path, url):
    from sessions.model import EngineSpec

    path = tmp_path / "s.toml"
    SessionFile.create(
        path,
        Session(
            name="s",
            personas=[_persona()],
            engines=[EngineSpec(id="t", kind="openai", base_url=url, model="teacher-1")],
        ),
    )
    return path


def test_a_teacher_writes_probes_under_the_schema_and_the_checks_drop_bad_ones(tmp_path):
    from fake_openai_server import FakeOpenAI

    persona = _persona()
    with FakeOpenAI(reply=_teacher_reply) as server:
        spec = SessionFile.load(_teacher_session(tmp_path, server.url)).session.engine("t")
        clocks, cycles = probe_writer.probes_by_engine(persona, spec, knowledge=4, expression=8)
        bodies = list(server.requests)
    assert len(bodies) == 2  # one request per trait
    schema = bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema == probe_writer.PROBE_SCHEMA and bodies[0]["response_format"]["type"] == "json_schema"
    assert "The trait to test: I repair old clocks for a living." in bodies[0]["messages"][-1]["content"]
    # Three good teacher probes kept, the bad three dropped with their reasons, one from the templates.
    assert [k.question for k in clocks.knowledge[:3]] == [
        f"What do you do about clocks, question {i}?" for i in range(3)
    ]
    assert len(clocks.knowledge) == 4 and clocks.knowledge[3].question.startswith(
        ("Someone", "Is it", "Would", "A friend", "I heard", "Tell me")
    )
    notes = "\n".join(clocks.notes)
    assert "wrote 3 knowledge probe(s) and 2 open prompt(s); the templates added 1 and 6" in notes
    assert "the same affirming and denying answer" in notes and "words apart in length" in notes
    assert "an empty question or answer" in notes
    assert "'Tell me about your workshop.': it names 'workshop'" in notes  # a marker phrase: dropped
    assert clocks.expression[:2] == ["What did you do this morning?", "What do you do on a Sunday?"]
    assert len(clocks.expression) == 8
    # The cycles trait already has 1 knowledge probe; its marker 'bicycle' rules out one prompt.
    assert "Do you like your bicycle?" not in cycles.expression
    for k in clocks.knowledge + cycles.knowledge:
        assert probe_writer.check_knowledge(k.question, k.affirm, k.deny) is None


def test_cli_keeps_a_teachers_probes_and_names_a_missing_engine(tmp_path):
    from fake_openai_server import FakeOpenAI

    with FakeOpenAI(reply=_teacher_reply) as server:
        path = _teacher_session(tmp_path, server.url)
        kept = _cli("persona", str(path), "--probes", "ada", "--per-trait", "3", "--teacher", "t", "--keep")
    assert kept.returncode == 0, kept.stderr
    assert "(teacher 't' (openai," in kept.stdout and "dropped knowledge" in kept.stdout
    clocks = SessionFile.load(path).session.personas[0].trait("clocks")
    assert [k.question for k in clocks.knowledge_probes] == [
        f"What do you do about clocks, question {i}?" for i in range(3)
    ]
    missing = _cli("persona", str(path), "--probes", "ada", "--teacher", "nope")
    assert missing.returncode == 2 and "has no engine 'nope' (engines: t)" in missing.stderr
    assert "Traceback" not in missing.stderr
    # The server is gone: one sentence naming the teacher, exit 2, nothing kept.
    gone = _cli("persona", str(path), "--probes", "ada", "--teacher", "t", "--keep")
    assert gone.returncode == 2 and "Teacher engine 't'" in gone.stderr and "Traceback" not in gone.stderr
    assert len(SessionFile.load(path).session.personas[0].trait("clocks").knowledge_probes) == 3
