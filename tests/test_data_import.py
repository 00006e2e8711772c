"""Imports from the real shared files: Synthetic-Persona-Chat and the persona-tailoring pairs."""

from __future__ import annotations

import json

import pytest

from conftest import SPC_VALID, TAILORING_DIR, needs_spc, needs_tailoring
from trainers.data.formats import check_record
from trainers.data.formats.persona_chat import build_examples as spc_examples
from trainers.data.formats.rows import ImportFileError
from trainers.data.formats.tailoring import build_examples as tailoring_examples
from trainers.data.formats.tailoring import parse_persona, template

SPC = SPC_VALID
TAILOR = TAILORING_DIR


# What the valid split holds, counted once by hand-checked parsing (the file is fixed).
SPC_COUNTS = {
    "rows": 1000,
    "conversations": 1000,
    "broken_rows": 0,
    "blank_lines": 877,
    "lines_without_prefix": 95,
    "markdown_prefixes": 73,
    "merged_same_speaker": 43,
    "truncated_last_turns": 72,
}


@needs_spc
@pytest.mark.parametrize("variant", ["own", "both", "context"])
def test_spc_import_counts_all_three_variants(variant):
    records, stats = spc_examples(SPC, variant)
    for key, value in SPC_COUNTS.items():
        assert stats[key] == value, key
    assert stats["placeholder_names"] > 900
    assert stats["stage_directions"] > 0
    assert stats["broken"] == []
    for r in records[:200]:
        assert check_record(r, "persona_chat") is None
        system = r["prompt"][0]
        assert system["role"] == "system" and system["content"].startswith("Your persona:\n- ")
        assert ("The other person's persona:" in system["content"]) == (variant == "both")
        assert "[" not in r["completion"][0]["content"]
        assert "User 1" not in r["completion"][0]["content"]
    if variant == "context":
        assert len(records) == 998  # one per conversation; two targets hold a placeholder
        assert all(len(r["prompt"]) - 1 == 3 for r in records)
    else:
        # every turn of either user, minus truncated last turns and targets with placeholders
        assert len(records) == 27639
        assert stats["targets_skipped_truncated"] == 72


@needs_spc
def test_spc_one_side_plays_only_that_user():
    one, _ = spc_examples(SPC, "own", side="1")
    two, _ = spc_examples(SPC, "own", side="2")
    both, _ = spc_examples(SPC, "own", side="both")
    assert len(one) + len(two) == len(both)
    assert {r["meta"]["side"] for r in one} == {1}
    # The played user's own earlier turns are the assistant's.
    r = next(r for r in one if r["meta"]["turn"] >= 4)
    assert r["prompt"][1]["role"] == "assistant"  # user 1 opens the conversation


def test_spc_quirks_and_broken_rows_by_line_number(tmp_path):
    csv_text = (
        "user 1 personas,user 2 personas,Best Generated Conversation\n"
        '"I like tea.\nI have a cat.","I am a pilot.","User 1: Hi, I\'m [User 1\'s name].\n\n'
        "User 2: Hello [name]! I'm [user 2 name].\n*User 1:* Here is my list:\n1 cup of tea\n"
        '[They drink tea]\nUser 2: Nice.\nUser 2: Very nice.\nUser 1: Bye for n"\n'
        '"I ski.",,"User 1: Hi!\nUser 2: Hey!"\n'
        '"I ski.","I swim.","no turns at all here"\n'
        '"I ski.","I swim.","User 1: Hi!\nUser 2: Hey!",extra\n'
        '"I read.","I sing.","User 1: Hello there.\nUser 2: Hi, how are you?\nUser 1: Fine, thanks."\n'
    )
    path = tmp_path / "spc.csv"
    path.write_text(csv_text)
    records, stats = spc_examples(path, "own")
    # Physical lines: the first record spans lines 2-11, the second 12-13, the fourth 15-16.
    assert [b["line"] for b in stats["broken"]] == [12, 14, 15]
    assert "user 2 personas cell is empty" in stats["broken"][0]["reason"]
    assert "4 fields" in stats["broken"][2]["reason"]
    assert stats["blank_lines"] == 1
    assert stats["markdown_prefixes"] == 1
    assert stats["continuation_lines"] == 1
    assert stats["stage_directions"] == 1
    assert stats["merged_same_speaker"] == 1
    assert stats["truncated_last_turns"] == 1
    assert stats["placeholder_names"] == 3
    first = [r for r in records if r["meta"]["row"] == 2]
    texts = [r["completion"][0]["content"] for r in first]
    assert texts[0].startswith("Hi, I'm ") and "[" not in texts[0]
    assert "Here is my list:\n1 cup of tea" in texts
    assert "Nice.\nVery nice." in texts
    assert not any(t.startswith("Bye") for t in texts)  # truncated last turn: not a target
    assert len([r for r in records if r["meta"]["row"] == 17]) == 3  # the 4-field record spans 15-16
    with pytest.raises(ImportFileError, match=r"spc\.csv, line 12: the user 2 personas cell is empty"):
        spc_examples(path, "own", strict=True)


def test_spc_refuses_a_file_without_the_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ImportFileError, match="no column 'user 1 personas'"):
        spc_examples(path, "own")
    with pytest.raises(ImportFileError, match="does not exist"):
        spc_examples(tmp_path / "missing.csv", "own")


@needs_tailoring
def test_tailoring_sft_and_dpo_from_the_real_files():
    sft, stats = tailoring_examples(TAILOR / "persona-tailoring_sft_train.jsonl", "sft")
    assert len(sft) == stats["rows"] == stats["persona_gold"] == 126
    first = json.loads((TAILOR / "persona-tailoring_sft_train.jsonl").read_text().splitlines()[0])
    assert sft[0]["prompt"] == f"Prompt: {first['prompt']}\nPersona: {first['chosen_persona_gold']}\nResponse:"
    assert sft[0]["completion"] == " " + first["chosen"]
    assert sft[0]["meta"]["rejected_persona"] == first["rejected_persona_gold"]
    for r in sft:
        assert check_record(r, "tailoring_sft") is None

    dpo, stats = tailoring_examples(TAILOR / "persona-tailoring_dpo_train.jsonl", "dpo", persona_source="retr")
    assert len(dpo) == 132 and stats["persona_retr"] == 132
    for r in dpo:
        assert check_record(r, "tailoring_dpo") is None
        assert r["prompt"].startswith("Prompt: ") and r["prompt"].endswith("\nResponse:")
        assert r["chosen"] != r["rejected"]
    both, _ = tailoring_examples(TAILOR / "persona-tailoring_dpo_val.jsonl", "dpo", both_sides=True)
    assert len(both) == 70
    mirrored = both[1]
    assert mirrored["meta"]["side"] == "rejected"
    assert mirrored["prompt"] == template(
        json.loads((TAILOR / "persona-tailoring_dpo_val.jsonl").read_text().splitlines()[0])["prompt"],
        mirrored["meta"]["rejected_persona"],
    )
    assert mirrored["chosen"] == both[0]["rejected"]


@needs_tailoring
def test_tailoring_without_personas_needs_an_engine_and_empty_pairs_are_broken():
    with pytest.raises(ImportFileError, match=r"persona-inference_train\.jsonl, line 1: .*no engine"):
        tailoring_examples(TAILOR / "persona-inference_train.jsonl", "sft")
    with pytest.raises(ImportFileError, match="no usable preference pairs .*500 broken"):
        tailoring_examples(TAILOR / "persona-tailoring_test.jsonl", "sft")


def test_tailoring_broken_jsonl_and_csv_rows_by_line(tmp_path):
    good = {
        "prompt": "Ephemeral",
        "chosen": "Ephemeral sounds like 'a femoral'.",
        "rejected": "It lasts a day.",
        "chosen_persona_gold": "The user is a visual learner.",
        "rejected_persona_gold": "The user is literal.",
    }
    lines = [
        json.dumps(good),
        "{not json",
        "",
        json.dumps({**good, "chosen": ""}),
        "[1, 2]",
        json.dumps({k: v for k, v in good.items() if k != "rejected"}),
        json.dumps(good),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    records, stats = tailoring_examples(path, "sft")
    assert len(records) == 2
    assert [(b["line"], b["reason"].split(" (")[0]) for b in stats["broken"]] == [
        (2, "the line is not valid JSON"),
        (4, "the field 'chosen' is empty"),
        (5, "the line is JSON but not an object"),
        (6, "the field 'rejected' is missing"),
    ]
    with pytest.raises(ImportFileError, match=r"pairs\.jsonl, line 2: the line is not valid JSON"):
        tailoring_examples(path, "sft", strict=True)

    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "prompt,chosen,rejected,chosen_persona_gold,rejected_persona_gold\n"
        'Ephemeral,"A femoral, short-lived.",It lasts a day.,The user is visual.,The user is literal.\n'
        "Loquacious,Talkative,\n"
        '"Multi\nline",Yes,No,The user likes lines.,The user hates lines.\n'
    )
    records, stats = tailoring_examples(csv_path, "dpo")
    assert len(records) == 2
    assert stats["broken"] == [{"line": 3, "reason": "the row has 3 fields but the header has 5"}]
    assert records[1]["prompt"].startswith("Prompt: Multi\nline\nPersona: The user likes lines.")


def test_persona_parser_survives_garbage():
    assert parse_persona("The user is a visual learner who likes rhymes. Also more.") == (
        "The user is a visual learner who likes rhymes."
    )
    assert parse_persona("Sure! Based on this, the user prefers short, literal explanations over puns") == (
        "The user prefers short, literal explanations over puns."
    )
    assert parse_persona("") is None
    assert parse_persona(None) is None
    assert parse_persona("Response A") is None
    assert parse_persona("the the the the the the the the the the the") is None


def test_the_data_command_names_broken_rows_by_line_and_refuses_them_with_strict(tmp_path):
    import os
    import subprocess
    import sys

    from sessions.model import DatasetSpec, Session
    from sessions.store import SessionFile

    good = {
        "prompt": "Ephemeral",
        "chosen": "Ephemeral sounds like 'a femoral'.",
        "rejected": "It lasts a day.",
        "chosen_persona_gold": "The user is a visual learner.",
        "rejected_persona_gold": "The user is literal.",
    }
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                json.dumps({**good, "prompt": "Loquacious"}),
                json.dumps({**good, "chosen": ""}),
                json.dumps({**good, "prompt": "Terse"}),
            ]
        )
        + "\n"
    )
    spec = DatasetSpec(
        id="tl",
        format="tailoring_sft",
        generator="import",
        source=str(pairs),
        size=10,
        held_out=0.0,
        extra={"persona_source": "gold", "token_stats": False},
    )
    session = SessionFile.create(tmp_path / "s.toml", Session(name="s", datasets=[spec])).path
    before = session.read_bytes()

    def data(*flags):
        return subprocess.run(
            [sys.executable, "-m", "persona_tui.cli", "data", str(session), "--dataset", "tl", *flags],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "120"},
        )

    done = data()
    assert done.returncode == 0, done.stderr
    assert "skipped line 2: the line is not valid JSON" in done.stderr
    assert "skipped line 4: the field 'chosen' is empty" in done.stderr
    assert (tmp_path / "s" / "datasets" / "tl.jsonl").read_text().count("\n") == 3
    refused = data("--strict")
    assert refused.returncode == 1 and "pairs.jsonl, line 2: the line is not valid JSON" in refused.stderr
    assert session.read_bytes() == before  # building never rewrites the session
