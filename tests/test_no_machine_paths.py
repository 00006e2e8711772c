"""No tracked code or test names a folder of one machine (the shared data, a home, a scratch dir).

Such a path works on the machine it was written on and nowhere else: the shared data is found
relative to the checkout (tests/conftest.py), temporary files come from `tmp_path`/`tempfile`.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

# Built from parts so that this file does not match itself.
ROOTS = ("work", "root", "home", "tmp", "Users")
PATTERN = re.compile(r"(?<![\w.~-])/(?:" + "|".join(ROOTS) + r")/")
# Text that is code or configuration; prose (docs, README) and SVG snapshots are not scanned.
SUFFIXES = (".py", ".toml", ".tcss", ".txt", ".sh", ".cfg", ".ini", ".yaml", ".yml", ".json")
SCRIPTS = ("scripts/setup", ".ci/run")


def tracked_code() -> list[str]:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing tracked to scan")
    out = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if p.endswith(SUFFIXES) or p in SCRIPTS]


def machine_paths(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if PATTERN.search(line)]


def test_the_pattern_finds_machine_paths_and_spares_others():
    bad = "/".join(("", "work", "shared", "data"))
    assert machine_paths(f'DATA = Path("{bad}")') == [(1, f'DATA = Path("{bad}")')]
    assert machine_paths("x = '/" + "tmp/out.gguf'")
    assert not machine_paths('url = "http://127.0.0.1:9/v1"; rel = "../shared/data"; p = "a/tmp/b"')


def test_no_tracked_code_names_a_path_of_this_machine():
    files = tracked_code()
    assert len(files) > 50  # the scan saw the code, not an empty listing
    found = []
    for rel in files:
        path = REPO_ROOT / rel
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{rel}:{n}: {line}" for n, line in machine_paths(text)]
    assert not found, "machine paths in tracked code (find them relative to the checkout instead):\n" + "\n".join(found)
