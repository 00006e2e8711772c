"""`persona-tui` run as a person runs it, for the tests: a subprocess with no terminal input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def persona_tui(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed console script (or the module where it is not installed)."""
    script = Path(sys.executable).parent / "persona-tui"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persona_tui.cli"]
    path = {} if script.exists() else {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "100", **path},
    )
