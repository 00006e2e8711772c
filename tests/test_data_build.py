"""Building dataset specs into a workspace: files, split, statistics, mixing, and bad input."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import SPC_VALID, TAILORING_DIR, needs_spc, needs_tailoring
from sessions.demo import demo_session
from sessions.model import DatasetSpec, EngineSpec, Persona
from sessions.store import SessionFile
from trainers.data import reader as data_reader
from trainers.data.build import DatasetError, build_dataset, check_spec, preview, render_text, split_records
from trainers.data.generate.llm import TeacherError

SPC = SPC_VALID
TAILOR = TAILORING_DIR


def _session(tmp_path: Path, *datasets: DatasetSpec, engines=()) -> SessionFile:
    session = demo_session()
    session.datasets = [*session.datasets, *datasets]
    session.engines = [*session.engines, *engines]
    session.personas.append(Persona(id="blank", name="Blank"))
    session.personas.append(Persona(id="traitless", name="Nobody", summary="A person.", facts=["I exist."]))
    return SessionFile.create(tmp_path / "s.toml", session)


def _files(sf: SessionFile) -> dict[str, bytes]:
    root = sf.path.parent
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_writes_train_heldout_and_stats(tmp_path):
    spec = DatasetSpec(id="chat", format="chat_demos", persona="odile", size=120, held_out=0.25, seed=9)
    sf = _session(tmp_path, spec)
    before = sf.path.read_bytes()
    res = build_dataset(sf.session, spec, sf.workspace, base_dir=sf.path.parent)
    assert sf.path.read_bytes() == before  # the build never writes the session
    train = data_reader.load_records(sf.workspace, "chat", "train")
    held = data_reader.load_records(sf.workspace, "chat", "heldout")
    assert (len(train), len(held)) == (90, 30)
    assert res.train_path == sf.workspace / "datasets" / "chat.jsonl"
    assert res.heldout_path == sf.workspace / "datasets" / "chat.heldout.jsonl"
    stats = json.loads((sf.workspace / "datasets" / "chat.stats.json").read_text())
    assert stats == data_reader.read_stats(sf.workspace, "chat")
    assert stats["count"] == 120 and stats["train"] == 90 and stats["heldout"] == 30
    assert stats["near_duplicates"]["pairs"] == 0
    assert 0 < stats["distinct_2"] < 1
    assert stats["tokens"]["base_model"] == "bundled:smollm2-135m-instruct"
    assert 10 < stats["tokens"]["mean"] < stats["tokens"]["max"] < 1000
    assert set(stats["trait_coverage"]) == {t.id for t in sf.session.persona("odile").traits}
    # Rebuilding with the same seed gives the same files.
    build_dataset(sf.session, spec, sf.workspace, with_tokens=False)
    assert data_reader.load_records(sf.workspace, "chat", "train") == train


def test_split_keeps_groups_together_and_is_seeded():
    records = [{"text": f"t{i}", "meta": {"row": i // 4}} for i in range(400)]
    train, held = split_records(records, 0.1, 3)
    assert len(held) == 40 and len(train) == 360
    assert not {r["meta"]["row"] for r in train} & {r["meta"]["row"] for r in held}
    assert split_records(records, 0.1, 3) == (train, held)
    assert split_records(records, 0.1, 4) != (train, held)
    assert split_records(records, 0.0, 3) == (records, [])


@needs_spc
def test_import_builds_with_size_and_relative_source(tmp_path):
    link = tmp_path / "data.csv"
    link.symlink_to(SPC)
    spec = DatasetSpec(
        id="spc", format="persona_chat", source="data.csv", size=500, variant="both", extra={"token_stats": False}
    )
    sf = _session(tmp_path, spec)
    res = build_dataset(sf.session, spec, sf.workspace, base_dir=sf.path.parent)
    assert res.stats["count"] == 500
    assert res.stats["generation"]["blank_lines"] == 877
    train = data_reader.load_records(sf.workspace, "spc", "train")
    held = data_reader.load_records(sf.workspace, "spc", "heldout")
    # Turns of one conversation never straddle the split.
    assert not {r["meta"]["row"] for r in train} & {r["meta"]["row"] for r in held}


@needs_tailoring
def test_mix_keeps_splits_and_refuses_shapes_that_do_not_mix(tmp_path):
    chat = DatasetSpec(id="chat", format="chat_demos", persona="odile", size=40, extra={"token_stats": False})
    docs = DatasetSpec(id="docs", format="synthetic_docs", persona="odile", size=30, extra={"token_stats": False})
    fp = DatasetSpec(id="fp", format="first_person", persona="odile", size=20, extra={"token_stats": False})
    sft = DatasetSpec(
        id="sft",
        format="tailoring_sft",
        source=str(TAILOR / "persona-tailoring_sft_val.jsonl"),
        size=0,
        extra={"token_stats": False},
    )
    text_mix = DatasetSpec(
        id="text-mix", format="first_person", mix=["docs", "fp"], size=0, extra={"token_stats": False}
    )
    bad_mix = DatasetSpec(id="bad-mix", format="chat_demos", mix=["chat", "docs"], size=0)
    unbuilt = DatasetSpec(id="unbuilt-mix", format="chat_demos", mix=["chat", "sft"], size=0)
    sf = _session(tmp_path, chat, docs, fp, sft, text_mix, bad_mix, unbuilt)
    with pytest.raises(DatasetError, match="mixes 'chat', which has not been built yet"):
        build_dataset(sf.session, text_mix.__class__(**{**text_mix.__dict__, "mix": ["chat"]}), sf.workspace)
    for d in (chat, docs, fp):
        build_dataset(sf.session, d, sf.workspace)
    res = build_dataset(sf.session, text_mix, sf.workspace)
    assert res.stats["train"] == 27 + 18 and res.stats["heldout"] == 3 + 2
    assert {r["meta"]["mixed_from"] for r in data_reader.load_records(sf.workspace, "text-mix")} == {"docs", "fp"}
    with pytest.raises(DatasetError, match="mixes record shapes"):
        build_dataset(sf.session, bad_mix, sf.workspace)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DatasetSpec(id="x", format="chat_demos", persona="blank"), "Persona 'blank' is empty"),
        (DatasetSpec(id="x", format="first_person", persona="traitless"), "Persona 'traitless' has no traits"),
        (
            DatasetSpec(id="x", format="chat_demos", persona="nobody"),
            "names persona 'nobody', which the session does not have",
        ),
        (DatasetSpec(id="x", format="chat_demos", persona=""), "names no persona"),
        (DatasetSpec(id="x", format="poetry", persona="odile"), "has format 'poetry'"),
        (DatasetSpec(id="x", format="persona_chat"), "its source is empty"),
        (DatasetSpec(id="x", format="persona_chat", source="missing.csv"), "missing.csv does not exist"),
        (DatasetSpec(id="x", format="chat_demos", persona="odile", size=0), "ask for at least one example"),
        (DatasetSpec(id="x", format="chat_demos", persona="odile", generator="magic"), "generator 'magic'"),
        (DatasetSpec(id="x", format="chat_demos", persona="odile", held_out=1.0), "held_out 1.0"),
        (DatasetSpec(id="x", format="chat_demos", persona="odile", generator="llm", engine="gpt9"), "engine 'gpt9'"),
        (DatasetSpec(id="../x", format="chat_demos", persona="odile"), "contains a path separator"),
    ],
)
def test_bad_input_is_one_sentence_and_changes_nothing(tmp_path, spec, message):
    sf = _session(tmp_path)  # the session file could not even hold most of these specs
    before = _files(sf)
    with pytest.raises(ValueError, match=message) as info:
        build_dataset(sf.session, spec, sf.workspace, base_dir=sf.path.parent)
    text = str(info.value)
    assert "\n" not in text and text.endswith(".")
    assert _files(sf) == before


class _Garbage(BaseHTTPRequestHandler):
    """A real OpenAI-compatible endpoint whose model only ever says '...'."""

    def log_message(self, *args):
        pass

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "garbage", "object": "model", "created": 0, "owned_by": "t"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "garbage",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "..."}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@pytest.fixture
def garbage_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_teacher_that_returns_nothing_usable_is_one_sentence(tmp_path, garbage_endpoint):
    engine = EngineSpec(id="junk", kind="openai", base_url=garbage_endpoint, model="garbage")
    spec = DatasetSpec(id="j", format="first_person", persona="odile", generator="llm", engine="junk", size=3)
    sf = _session(tmp_path, spec, engines=[engine])
    before = _files(sf)
    with pytest.raises(
        TeacherError, match=r"Teacher engine 'junk' .*returned nothing usable in 22 tries \(22 malformed"
    ):
        build_dataset(sf.session, spec, sf.workspace)
    assert _files(sf) == before


def test_an_unreachable_endpoint_is_one_sentence(tmp_path):
    engine = EngineSpec(id="far", kind="openai", base_url="http://127.0.0.1:9/v1", model="m", extra={"max_retries": 0})
    spec = DatasetSpec(id="f", format="chat_demos", persona="odile", generator="llm", engine="far", size=2)
    sf = _session(tmp_path, spec, engines=[engine])
    before = _files(sf)
    with pytest.raises(
        TeacherError,
        match=r"Teacher engine 'far' .*cannot reach the OpenAI-compatible endpoint at http://127\.0\.0\.1:9/v1",
    ):
        build_dataset(sf.session, spec, sf.workspace)
    assert _files(sf) == before


def test_check_spec_returns_the_persona():
    session = demo_session()
    spec = session.datasets[0]
    assert check_spec(session, spec).id == "odile"


def test_preview_renders_through_the_chat_template(tmp_path):
    spec = DatasetSpec(id="chat", format="chat_demos", persona="odile", size=5, extra={"token_stats": False})
    sf = _session(tmp_path, spec)
    build_dataset(sf.session, spec, sf.workspace)
    record = data_reader.load_records(sf.workspace, "chat")[0]
    text = preview(record)
    assert "<|im_start|>user\n" + record["messages"][0]["content"] in text
    assert "<|im_start|>assistant\n" + record["messages"][1]["content"] in text
    assert render_text({"text": "plain"}, None) == "plain"
    dpo = {"prompt": "Prompt: a\nPersona: b\nResponse:", "chosen": " yes", "rejected": " no"}
    assert preview(dpo).endswith("--- rejected ---\nPrompt: a\nPersona: b\nResponse: no")


def test_edit_and_delete_one_record(tmp_path):
    spec = DatasetSpec(
        id="fp", format="first_person", persona="odile", size=10, held_out=0, extra={"token_stats": False}
    )
    sf = _session(tmp_path, spec)
    build_dataset(sf.session, spec, sf.workspace)
    data_reader.replace_record(sf.workspace, "fp", 2, {"text": "I am edited."}, "first_person")
    assert data_reader.load_records(sf.workspace, "fp")[2] == {"text": "I am edited."}
    with pytest.raises(ValueError, match="not valid: a first_person record has the text shape"):
        data_reader.replace_record(sf.workspace, "fp", 2, {"messages": []}, "first_person")
    removed = data_reader.delete_record(sf.workspace, "fp", 2)
    assert removed == {"text": "I am edited."}
    assert len(data_reader.load_records(sf.workspace, "fp")) == 9
    with pytest.raises(ValueError, match="has no example 40"):
        data_reader.delete_record(sf.workspace, "fp", 40)
