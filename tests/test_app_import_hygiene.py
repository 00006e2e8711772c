"""The core is reachable without the TUI, and the TUI opens without the ML stack.

Checked twice, as Harlequin does: at run time in a fresh interpreter (what `sys.modules` holds
after the imports), and statically with import-linter's contracts from pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every module of these packages is imported, so a late-added one is checked too.
PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    packages, forbidden = sys.argv[1].split(","), sys.argv[2].split(",")
    imported, skipped = [], []
    for name in packages:
        package = importlib.import_module(name)
        imported.append(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as error:
                # GPU-only extras are absent on a CPU machine; anything else is a real failure.
                if error.name and error.name.split(".")[0] in {"unsloth", "bitsandbytes", "pynvml"}:
                    skipped.append(info.name)
                    continue
                raise
            imported.append(info.name)
    found = sorted({m.split(".")[0] for m in sys.modules} & set(forbidden))
    print(json.dumps({"imported": imported, "skipped": skipped, "forbidden_found": found}))
    """
)


def imports_in_fresh_python(packages: list[str], forbidden: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(packages), ",".join(forbidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_core_imports_no_textual_and_no_persona_tui():
    report = imports_in_fresh_python(
        ["sessions", "supervisor", "trainers", "evaluators", "engines"], ["textual", "persona_tui"]
    )
    assert "sessions.store" in report["imported"]
    assert report["forbidden_found"] == [], report


def test_the_app_and_cli_import_no_ml_library():
    report = imports_in_fresh_python(["persona_tui"], ["torch", "transformers", "llama_cpp"])
    for module in ("persona_tui.app", "persona_tui.cli", "persona_tui.panes.personas"):
        assert module in report["imported"]
    assert report["forbidden_found"] == [], report


def test_help_runs_without_textual_or_ml_libraries():
    """`persona-tui --help` needs neither the UI nor the ML stack."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['persona-tui', '--help']\n"
        "from persona_tui.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'textual', 'torch', 'transformers', 'llama_cpp'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (pip install import-linter)")
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_starting_a_run_from_the_app_does_not_import_the_ml_stack(tmp_path):
    """The Train pane validates and creates the job in the app's process; on a machine without an
    GPU driver that must not pay torch's import (the worker imports it, detached)."""
    from trainers.train.hardware import gpu_driver_present

    if gpu_driver_present():
        pytest.skip("a GPU driver is present: asking torch for the GPU count is the honest answer there")
    probe = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from sessions.model import DatasetSpec, RunSpec, Session
        from sessions.store import SessionFile
        from trainers.train.job import create_train_job
        root = Path(sys.argv[1])
        (root / "s").mkdir()
        (root / "s" / "datasets").mkdir()
        (root / "s" / "datasets" / "d.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\\n')
        session = Session(name="s", datasets=[DatasetSpec(id="d", format="chat_demos")], runs=[RunSpec(id="r", datasets=["d"])])
        sf = SessionFile.create(root / "s.toml", session)
        job = create_train_job(sf, "r")
        print(json.dumps({"job": str(job), "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["job"]).is_dir()
    assert report["torch"] is False and report["transformers"] is False
