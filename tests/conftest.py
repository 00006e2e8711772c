"""Fixtures and paths shared by the test modules.

The shared data sets (Synthetic-Persona-Chat, persona tailoring) live in the `shared/` folder
beside the checkout, never at a path of one machine: `<repo root>/../shared/data`, or
`$PERSONA_TUI_SHARED_DIR/data` when that variable is set. Modules that decide at import time
whether to skip import the markers below (`from conftest import needs_spc`): a checkout without
`shared/` beside it (a clone in /tmp) skips those tests and runs the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR_ENV = "PERSONA_TUI_SHARED_DIR"


def shared_dir() -> Path:
    """The shared folder: $PERSONA_TUI_SHARED_DIR if set, else `shared/` beside the checkout."""
    env = os.environ.get(SHARED_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared"


SHARED_DATA = shared_dir() / "data"
SPC_VALID = SHARED_DATA / "synthetic-persona-chat" / "Synthetic-Persona-Chat_valid.csv"
TAILORING_DIR = SHARED_DATA / "persona-tailoring-mnemonic"

needs_spc = pytest.mark.skipif(
    not SPC_VALID.is_file(), reason=f"the shared Synthetic-Persona-Chat file is not at {SPC_VALID}"
)
needs_tailoring = pytest.mark.skipif(
    not TAILORING_DIR.is_dir(), reason=f"the shared tailoring data is not at {TAILORING_DIR}"
)


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    """A fresh copy of the demo session (the rich one every pane knows) in tmp_path."""
    from sessions.demo import write_demo_session

    return write_demo_session(tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests (`pytestmark = pytest.mark.anyio`) run on asyncio, the loop Textual uses."""
    return "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "snapshot: an SVG snapshot of the app (regenerate: pytest -m snapshot --snapshot-update)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes an SVG snapshot, so that one command regenerates them all:
    `.venv/bin/python -m pytest -m snapshot --snapshot-update`."""
    for item in items:
        if "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.snapshot)
