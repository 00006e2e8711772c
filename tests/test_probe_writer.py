"""The offline probe writer: probes from any persona's traits and facts, reviewed before they are
kept, never repeating the training data; through the core and through `persona-tui persona`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from evaluators import probe_writer
from evaluators.probes import marker_hits
from sessions.model import KnowledgeProbe, Persona, Session, Trait
from sessions.store import SessionFile
from sessions.validate import validate

ROOT = Path(__file__).resolve().parent.parent


def _persona() -> Persona:
    return Persona(
        id="ada", name="Ada", facts=["I repair clocks in a workshop by the station.", "I have two sisters."],
        traits=[
            Trait(id="clocks", text="I repair old clocks for a living.", markers=["clock", "workshop"]),
            Trait(id="cycles", text="My bicycle is my only transport.", markers=["bicycle", "ride"],
                  knowledge_probes=[KnowledgeProbe("Do you drive?", "No, I ride my bicycle.", "Yes, I drive a van.")]),
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
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Do you drive?"},
                                             {"role": "assistant", "content": "Well. No, I ride my bicycle."}]}) + "\n")
    found = probe_writer.training_repeats(persona, [data])
    assert found == [("trait 'cycles' knowledge probe 1 question", "do you drive?"),
                     ("trait 'cycles' knowledge probe 1 affirm", "no, i ride my bicycle.")]
    assert probe_writer.training_repeats(persona, ["Something else entirely, said once."]) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persona_tui.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})


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
