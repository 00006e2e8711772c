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
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "100"})


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
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


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
