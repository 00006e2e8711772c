"""Property: whatever bytes the readers are given — random, or a good file mutated — only the
project's own error types come out (each a one-sentence ValueError that the CLI prints), never a
KeyError, TypeError, UnicodeDecodeError or the like from deep inside.

Readers: the session file (load and validate), character cards and persona lists, the CSV/JSONL
rows of the Synthetic-Persona-Chat and persona-tailoring importers, and the JSON Lines reader.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sessions.cards import export_card, read_persona_file  # noqa: E402
from sessions.demo import demo_persona, demo_session  # noqa: E402
from sessions.jsonl import read_jsonl  # noqa: E402
from sessions.store import SessionFile  # noqa: E402
from sessions.validate import validate_file  # noqa: E402
from trainers.data.formats.persona_chat import build_examples as spc_examples  # noqa: E402
from trainers.data.formats.tailoring import build_examples as tailoring_examples  # noqa: E402

PROJECT_PACKAGES = {"sessions", "engines", "trainers", "evaluators", "persona_tui"}
RUNS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_project_errors(read, data: bytes, name: str) -> None:
    """Write `data` to a file called `name` and read it; any exception must be the project's."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            read(path)
        except Exception as error:  # noqa: BLE001  (what is asserted is the type)
            module = type(error).__module__.split(".")[0]
            assert module in PROJECT_PACKAGES and isinstance(error, ValueError), (
                f"{type(error).__module__}.{type(error).__name__} escaped: {error!r}"
            )
            assert str(error).strip(), "an error without a message"


def test_the_check_fails_on_a_foreign_error():
    def leaky(path: Path) -> None:
        raise KeyError("chosen")

    with pytest.raises(AssertionError, match="KeyError escaped"):
        only_project_errors(leaky, b"", "x.jsonl")


def session_text() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.toml"
        SessionFile.create(path, demo_session())
        return path.read_bytes()


def card_bytes() -> bytes:
    return json.dumps(export_card(demo_persona()), ensure_ascii=False).encode()


def spc_csv() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["user 1 personas", "user 2 personas", "Best Generated Conversation"])
    w.writerow(
        [
            "I love to bake cookies.\nI have a dog.",
            "I am a nurse.\nI like jazz.",
            "User 1: Hi!\nUser 2: Hello, how are you?\nUser 1: Baking, as ever.\nUser 2: Nice.",
        ]
    )
    return out.getvalue().encode()


def tailoring_jsonl() -> bytes:
    row = {
        "prompt": "Ephemeral",
        "chosen": "Sounds like 'a femoral'.",
        "rejected": "It lasts a day.",
        "chosen_persona_gold": "The user is a visual learner.",
        "rejected_persona_gold": "The user is literal.",
    }
    return (json.dumps(row) + "\n" + json.dumps({**row, "prompt": "Lucid"}) + "\n").encode()


SEEDS = {"session": session_text(), "card": card_bytes(), "spc": spc_csv(), "tailoring": tailoring_jsonl()}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """A good file with a few bytes cut, replaced or inserted, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["cut", "replace", "insert", "truncate"]))
        if op == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "replace":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = (
                draw(st.binary(min_size=1, max_size=12))
                if draw(st.booleans())
                else draw(
                    st.sampled_from([b'"', b"[", b"]", b"{", b"=", b"\n", b"\\", b"'''", b"[[personas]]\n", b'"""'])
                )
            )
        else:
            del data[at:]
    return bytes(data)


def any_input(seed: str):
    """Random bytes, random text, or the seed file mutated."""
    return st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode), mutated(SEEDS[seed]))


def load_session(path: Path) -> None:
    SessionFile.load(path)


def validate_session(path: Path) -> None:
    problems = validate_file(path)
    assert all(str(p).strip() for p in problems)


@RUNS
@given(any_input("session"))
def test_session_readers_raise_only_session_errors(data: bytes):
    only_project_errors(load_session, data, "s.toml")
    only_project_errors(validate_session, data, "s.toml")


@st.composite
def card_objects(draw):
    """A card's JSON with a field set to something of the wrong shape."""
    card = json.loads(card_bytes())
    junk = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )
    where = draw(st.sampled_from(["top", "data", "book"]))
    value = draw(junk)
    if where == "top":
        card[draw(st.sampled_from(["spec", "spec_version", "data"]))] = value
    elif where == "data":
        card["data"][draw(st.sampled_from(sorted(card["data"]) + ["extensions", "character_book"]))] = value
    else:
        card["data"]["character_book"] = {"entries": [value]}
    return json.dumps(card).encode()


@RUNS
@given(st.one_of(any_input("card"), card_objects()))
def test_card_readers_raise_only_card_errors(data: bytes):
    only_project_errors(read_persona_file, data, "card.json")
    only_project_errors(read_persona_file, data, "card.png")
    only_project_errors(read_persona_file, data, "persona.txt")  # a persona list: one fact per line


@RUNS
@given(any_input("spc"))
def test_persona_chat_rows_raise_only_import_errors(data: bytes):
    only_project_errors(lambda p: spc_examples(p, "own"), data, "spc.csv")
    only_project_errors(lambda p: spc_examples(p, "own", strict=True), data, "spc.csv")


@RUNS
@given(any_input("tailoring"))
def test_tailoring_rows_raise_only_import_errors(data: bytes):
    only_project_errors(lambda p: tailoring_examples(p, "sft"), data, "pairs.jsonl")
    only_project_errors(lambda p: tailoring_examples(p, "dpo", strict=True), data, "pairs.jsonl")
    only_project_errors(lambda p: tailoring_examples(p, "sft"), data, "pairs.csv")
    only_project_errors(read_jsonl, data, "rows.jsonl")
