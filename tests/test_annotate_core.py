"""The annotation core: the queue from real job and chat files, labels with undo, blind order,
export, and that it never needs the TUI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotate_fixtures import MODELS, make_annotation_session
from evaluators import annotation as core
from evaluators.annotation import Labelling, QueueItem
from sessions.store import SessionFile


@pytest.fixture
def session_file(tmp_path: Path) -> SessionFile:
    return SessionFile.load(make_annotation_session(tmp_path))


def queue_of(sf: SessionFile) -> core.Queue:
    return core.build_queue(sf.session, sf.workspace)


def test_queue_holds_every_reply_with_a_stable_key(session_file):
    queue = queue_of(session_file)
    assert [i.key for i in queue.items] == [
        "eval-a:1",
        "eval-a:2",
        "eval-a:4",
        "eval-a:5",  # knowledge rows are not replies
        "eval-b:0",
        "eval-b:2",  # line 1 is damaged, line 3 has no reply
        "chat:0",
    ]
    first = queue.items[0]
    assert first.model == MODELS[0] and first.kind == "expression" and first.source == "eval-a"
    assert first.prompt == "How do I get from the train station to the harbour?"
    # The persona frozen in the job's spec, the probed trait first.
    assert first.persona_id == "odile"
    assert [t.id for t in queue.items[2].traits()][:2] == ["cannot-swim", "draws-maps"]
    assert len(queue.items[2].traits()) == 5

    ref = queue.find("eval-b:0")
    assert ref.prompt == "system: You are Odile.\nuser: Hello!"
    assert ref.reference == "Hello there." and ref.persona is None and ref.traits() == []
    bare = queue.find("eval-b:2")
    assert (bare.reply, bare.model, bare.prompt, bare.kind) == ("A bare reply with nothing else.", "", "", "reply")

    chat = queue.find("chat:0")
    assert chat.model == "chat-engine" and chat.source == "chat" and chat.persona_id == "odile"
    assert chat.prompt == "Can you swim?" and len(chat.traits()) == 5

    assert len(queue.problems) == 1
    assert "eval-b" in queue.problems[0] and "line 2 is not valid JSON" in queue.problems[0]


def test_an_empty_workspace_has_an_empty_queue(tmp_path):
    from sessions.demo import write_demo_session

    sf = SessionFile.load(write_demo_session(tmp_path))
    queue = queue_of(sf)
    assert queue.items == [] and queue.problems == []


def test_a_line_being_written_is_not_a_problem(session_file):
    outputs = session_file.workspace / "jobs" / "eval-a" / "outputs.jsonl"
    with open(outputs, "a") as f:
        f.write('{"kind": "expression", "reply": "half a li')
    queue = queue_of(session_file)
    assert len(queue.items) == 7 and len(queue.problems) == 1


def test_send_to_annotation_appends_chat_keys(session_file):
    key = core.send_to_annotation(
        session_file.workspace, [{"role": "user", "content": "Tea?"}], "Always.", engine="e2", persona="odile"
    )
    assert key == "chat:1"
    item = queue_of(session_file).find(key)
    assert item.prompt == "user: Tea?" and item.reply == "Always." and item.model == "e2"


def test_labels_are_kept_per_output_and_annotator_and_undone(session_file):
    session = session_file.session
    alice = Labelling(session, "alice")
    bob = Labelling(session, "bob")
    alice.label_trait("eval-a:1", "draws-maps", "expressed")
    alice.label_trait("eval-a:1", "cannot-swim", "contradicted")
    alice.rate("eval-a:1", 4)
    bob.label_trait("eval-a:1", "draws-maps", "not_shown", blind=True)
    assert len(session.annotations) == 2
    mine = alice.get("eval-a:1")
    assert mine.trait_labels == {"draws-maps": "expressed", "cannot-swim": "contradicted"}
    assert mine.consistency == 4 and mine.annotator == "alice" and mine.time.endswith("+00:00")
    assert bob.get("eval-a:1").trait_labels == {"draws-maps": "not_shown"}
    assert bob.get("eval-a:1").extra == {"blind": True}
    assert alice.progress(["eval-a:1", "eval-a:2"]) == (1, 2)

    # The same label again changes nothing and adds no undo step.
    alice.label_trait("eval-a:1", "draws-maps", "expressed")
    assert alice.undo() == "eval-a:1"
    assert alice.get("eval-a:1").consistency == 0
    assert alice.get("eval-a:1").trait_labels == {"draws-maps": "expressed", "cannot-swim": "contradicted"}
    alice.undo()
    alice.undo()
    assert alice.get("eval-a:1") is None  # undone back to nothing: the annotation is gone
    assert alice.undo() is None
    assert [a.annotator for a in session.annotations] == ["bob"]  # bob's labels untouched

    # Saved and loaded back, through the real store.
    alice.set_note("eval-a:2", "  reads like a pirate  ")
    alice.rate("eval-a:2", 2)
    session_file.save()
    again = SessionFile.load(session_file.path)
    got = Labelling(again.session, "alice").get("eval-a:2")
    assert (got.note, got.consistency) == ("reads like a pirate", 2)


def test_clearing_every_label_removes_the_annotation(session_file):
    alice = Labelling(session_file.session, "alice")
    alice.label_trait("chat:0", "keeps-bees", "expressed")
    alice.label_trait("chat:0", "keeps-bees", None)
    assert session_file.session.annotations == []
    alice.undo()
    assert alice.get("chat:0").trait_labels == {"keeps-bees": "expressed"}


def test_bad_labels_are_refused_with_a_sentence(session_file):
    alice = Labelling(session_file.session, "alice")
    with pytest.raises(ValueError, match="not one of expressed, not_shown, contradicted"):
        alice.label_trait("chat:0", "keeps-bees", "maybe")
    with pytest.raises(ValueError, match="rate from 1 to 5"):
        alice.rate("chat:0", 6)
    assert session_file.session.annotations == []


def test_blind_order_is_a_stable_shuffle_per_annotator_that_hides_the_model(session_file):
    items = queue_of(session_file).items
    natural = [i.key for i in items]
    alice = [i.key for i in core.blind_order(items, "alice")]
    assert sorted(alice) == sorted(natural)
    # Stable: a fresh queue from disk (a restart) gives the same order.
    assert [i.key for i in queue_of(session_file).ordered("alice", blind=True)] == alice
    assert queue_of(session_file).ordered("alice", blind=False) == items
    # Shuffled, and differently for another person.
    assert alice != natural
    assert [i.key for i in core.blind_order(items, "bob")] not in (alice, natural)
    # A new output does not move the others relative to each other.
    more = items + [QueueItem(key="chat:9", source="chat", prompt="", reply="x")]
    assert [i.key for i in core.blind_order(more, "alice") if i.key != "chat:9"] == alice

    item = items[0]
    assert item.describe(blind=False)["model"] == MODELS[0]
    hidden = item.describe(blind=True)
    assert hidden == {"persona": "odile", "trait": "draws-maps"}
    assert queue_of(session_file).find("chat:0").describe(blind=True) == {"persona": "odile"}


def test_export_writes_one_json_line_per_label(session_file, tmp_path):
    session = session_file.session
    Labelling(session, "alice").label_trait("eval-a:4", "cannot-swim", "contradicted", blind=True)
    Labelling(session, "alice").set_note("eval-a:4", "says she swims daily")
    Labelling(session, "bob").rate("chat:0", 5)
    Labelling(session, "bob").rate("gone:3", 1)  # an output no longer on disk is still exported
    queue = queue_of(session_file)

    out = tmp_path / "out" / "labels.jsonl"
    assert core.export_jsonl(session, out, queue) == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    first = lines[0]
    assert first["output"] == "eval-a:4" and first["annotator"] == "alice"
    assert first["trait_labels"] == {"cannot-swim": "contradicted"} and first["consistency"] is None
    assert first["note"] == "says she swims daily" and first["blind"] is True
    assert first["model"] == MODELS[0] and first["trait"] == "cannot-swim" and first["source"] == "eval-a"
    assert first["reply"].startswith("Reply 4 about cannot-swim")
    assert lines[1]["consistency"] == 5 and lines[1]["model"] == "chat-engine"
    assert lines[2] == {
        "output": "gone:3",
        "annotator": "bob",
        "trait_labels": {},
        "consistency": 1,
        "note": "",
        "time": lines[2]["time"],
    }

    assert core.export_jsonl(session, out, queue, annotator="bob") == 2
    assert {json.loads(line)["annotator"] for line in out.read_text().splitlines()} == {"bob"}

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="could not write"):
        core.export_jsonl(session, blocker / "labels.jsonl", queue)


def test_default_annotator_order(monkeypatch):
    monkeypatch.setenv(core.ANNOTATOR_ENV, "from-env")
    assert core.default_annotator("given") == "given"
    assert core.default_annotator() == "from-env"
    monkeypatch.delenv(core.ANNOTATOR_ENV)
    import getpass

    assert core.default_annotator() == getpass.getuser()


def test_the_core_does_not_import_the_tui():
    code = (
        "import sys, evaluators.annotation\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'persona_tui', 'torch')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
