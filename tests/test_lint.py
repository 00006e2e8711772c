"""Lint, format and type checks, run as tests so the README's one test command (and `.ci/run`)
keeps them, the way tests/test_app_import_hygiene.py keeps the import contracts.

The settings live in pyproject.toml ([tool.ruff], [tool.mypy]); these tests add nothing to them,
so running `ruff check .`, `ruff format --check .` or `mypy` by hand gives the same answer. To fix
what they report: `.venv/bin/ruff check --fix . && .venv/bin/ruff format .` (imports, then
layout), and mypy's errors by hand.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes():
    result = _tool("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert result.returncode == 0, (
        "ruff check found problems (`.venv/bin/ruff check --fix .` fixes the [*] ones):\n"
        + result.stdout
        + result.stderr
    )


def test_ruff_format_check_passes():
    result = _tool("ruff", "format", "--check", "--output-format", "concise", ".")
    assert result.returncode == 0, (
        "these files are not formatted as pyproject.toml's [tool.ruff.format] says; "
        "`.venv/bin/ruff format .` formats them:\n" + result.stdout + result.stderr
    )


def test_mypy_passes_on_the_core():
    """sessions/, supervisor/, engines/, trainers/ and evaluators/ (the `files` of [tool.mypy])."""
    result = _tool("mypy")
    assert result.returncode == 0, "mypy found type errors in the core:\n" + result.stdout + result.stderr
    assert "Success" in result.stdout
