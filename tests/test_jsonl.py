"""The one JSON Lines reader (sessions.jsonl): what a bad line means is the caller's choice."""

from __future__ import annotations

import json

import pytest

from sessions.jsonl import JsonlLineError, iter_jsonl, read_jsonl


def test_bad_lines_raise_naming_file_and_line_or_go_to_the_caller(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{broken\n[1, 2]\n{"a": 2}\n')
    with pytest.raises(JsonlLineError, match=r"rows\.jsonl line 3 is not valid JSON \(.*\); rebuild it\.$"):
        read_jsonl(path, fix="rebuild it")
    seen = []
    rows = list(iter_jsonl(path, bad=lambda n, why: seen.append((n, why.split(" (")[0]))))
    assert rows == [(1, {"a": 1}), (5, {"a": 2})]
    assert seen == [(3, "is not valid JSON"), (4, "is not a JSON object")]


def test_a_half_written_last_line_is_skipped_only_when_asked(tmp_path):
    path = tmp_path / "outputs.jsonl"
    path.write_text(json.dumps({"i": 0}) + "\n" + '{"i": 1, "rep')  # a running job mid-write
    assert read_jsonl(path, bad=None, partial_tail=True) == [{"i": 0}]
    with pytest.raises(JsonlLineError, match="line 2"):
        read_jsonl(path)
    path.write_text(json.dumps({"i": 0}) + "\n" + '{"i": 1, "rep\n')  # a finished line: damage
    with pytest.raises(JsonlLineError, match="line 2"):
        read_jsonl(path, partial_tail=True)


def test_bytes_that_are_not_utf8_are_one_sentence(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe\x00\n')
    with pytest.raises(JsonlLineError, match="not UTF-8"):
        read_jsonl(path)
    assert read_jsonl(path, bad=lambda n, why: None, errors="replace") == [{"a": 1}]
