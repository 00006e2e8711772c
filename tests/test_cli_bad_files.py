"""A bad session file gets one sentence and exit code 2, before any UI starts; nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def persona_tui(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "persona-tui"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persona_tui.cli"]
    # A timeout, not a hang, if the UI were started by mistake.
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "100"},
    )


def make_missing(folder: Path) -> Path:
    return folder / "nothere.toml"


def make_directory(folder: Path) -> Path:
    path = folder / "adir.toml"
    path.mkdir()
    return path


def make_binary(folder: Path) -> Path:
    path = folder / "binary.toml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    return path


def make_invalid_toml(folder: Path) -> Path:
    path = folder / "invalid.toml"
    path.write_text('schema = 1\nname = "x"\n[[personas]\nid = "a"\n')
    return path


def make_wrong_types(folder: Path) -> Path:
    path = folder / "types.toml"
    path.write_text('schema = 1\nname = "x"\n\n[[personas]]\nid = 3\nname = ["a"]\nfacts = "no"\n')
    return path


def make_newer_schema(folder: Path) -> Path:
    path = folder / "newer.toml"
    path.write_text('schema = 99\nname = "from the future"\n')
    return path


CASES = {
    "missing": (make_missing, "does not exist"),
    "directory": (make_directory, "folder"),
    "binary": (make_binary, "binary"),
    "invalid TOML": (make_invalid_toml, "not valid TOML"),
    "wrong types": (make_wrong_types, "should be text"),
    "newer schema": (make_newer_schema, "newer"),
}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", [(), ("validate",)], ids=["open", "validate"])
def test_bad_file_one_sentence_exit_2_nothing_changes(tmp_path: Path, case: str, command: tuple):
    make, expected = CASES[case]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    result = persona_tui(*command, str(path))
    assert result.returncode == 2
    output = (result.stderr + result.stdout).strip()
    assert "\x1b" not in output  # no UI was started
    lines = output.splitlines()
    if command == ("validate",):
        # Every problem, one per line, each naming the file.
        assert all(path.name in line and line.endswith(".") for line in lines), output
    else:
        assert len(lines) == 1, output  # one sentence, no traceback
        assert output.endswith("."), output
    assert path.name in lines[0] and expected in output, output
    assert snapshot(tmp_path) == before


def _file(name: str, content: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name

    return make


CARD_CASES = {
    "missing": (lambda f: f / "nocard.json", "does not exist"),
    "directory": (make_directory, "folder"),
    "binary": (_file("b.json", b"\x89\xff\x00\x01" * 64), "not JSON text"),
    "not JSON": (_file("broken.json", b'{"spec": "chara_card_v2",\n  "data": {'), "line 2"),
    "JSON that is not a card": (_file("list.json", b"[1, 2, 3]\n"), "Character Card"),
    "a card without a name": (
        _file("noname.json", b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"description": "x"}}'),
        "name",
    ),
}


@pytest.mark.parametrize("case", list(CARD_CASES))
def test_a_bad_card_on_the_cli_is_one_sentence_exit_2_and_the_session_is_untouched(tmp_path: Path, case: str):
    session = tmp_path / "s.toml"
    assert persona_tui("new", str(session)).returncode == 0
    make, expected = CARD_CASES[case]
    card = make(tmp_path)
    before = snapshot(tmp_path)
    result = persona_tui("persona", str(session), "--import", str(card))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and card.name in lines[0] and expected in lines[0], result.stderr
    assert snapshot(tmp_path) == before


def test_cards_and_persona_lists_import_and_export_through_the_cli(tmp_path: Path):
    session = tmp_path / "s.toml"
    assert persona_tui("new", str(session), "--demo").returncode == 0
    card = tmp_path / "odile.card.json"
    done = persona_tui("persona", str(session), "--export", "odile", str(card))
    assert done.returncode == 0 and card.is_file(), done.stderr
    again = persona_tui("persona", str(session), "--export", "odile", str(card))
    assert again.returncode == 2 and "--force" in again.stderr
    listed = tmp_path / "odile.txt"
    assert persona_tui("persona", str(session), "--export", "odile", str(listed)).returncode == 0
    assert listed.read_text().count("\n") >= 5 and "{" not in listed.read_text()
    imported = persona_tui("persona", str(session), "--import", str(card))
    assert imported.returncode == 0 and "as 'odile-marsh'" in imported.stdout or "as 'odile" in imported.stdout
    from sessions.store import SessionFile

    personas = SessionFile.load(session).session.personas
    assert len(personas) == 2 and personas[1].id != personas[0].id
    # The round trip keeps the traits with their probes.
    assert [t.text for t in personas[1].traits] == [t.text for t in personas[0].traits]
    assert personas[1].traits[0].knowledge_probes == personas[0].traits[0].knowledge_probes
    out = persona_tui("persona", str(session))
    assert out.returncode == 0 and out.stdout.count("traits,") == 2
    unknown = persona_tui("persona", str(session), "--export", "nobody", str(tmp_path / "n.json"))
    assert unknown.returncode == 2 and "no persona 'nobody'" in unknown.stderr
