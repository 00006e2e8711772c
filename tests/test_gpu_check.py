"""scripts/gpu-check on this machine: no NVIDIA GPU, so every check SKIPs with its reason and the
exit status is 0; a driver that lists a GPU torch cannot see is a FAIL (exit 1), not a SKIP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check"

pytestmark = pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this test is about a machine without a GPU")


def _run(tmp_path: Path, *args: str, tools: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (tools or {}).items():
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\n{body}\n")
        exe.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": str(ROOT),
        "PERSONA_TUI_GPU_CHECK_ANY_PYTHON": "1",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _rows(out: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out.splitlines()[2:]:
        name, state, detail = line.split(None, 2)
        rows[name] = (state, detail)
    return rows


def test_without_a_gpu_every_check_skips_with_its_reason(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert list(rows) == ["cuda", "hf-lora", "unsloth-4bit", "hf-qlora", "accelerate", "llama-cuda"]
    assert {state for state, _ in rows.values()} == {"SKIP"}
    assert rows["cuda"][1].startswith("no NVIDIA GPU (nvidia-smi is not installed; torch 2.")
    assert all(detail == "torch sees no CUDA device" for name, (_, detail) in rows.items() if name != "cuda")


def test_a_gpu_torch_cannot_see_fails_and_names_the_fix(tmp_path):
    smi = 'if [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"; fi'
    done = _run(tmp_path, "--only", "cuda,accelerate", "--json", tools={"nvidia-smi": smi})
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["check"] for r in lines] == ["cuda", "accelerate"]
    assert lines[0]["result"] == "FAIL" and "nvidia-smi lists 1 GPU(s) but torch" in lines[0]["detail"]
    assert "scripts/setup" in lines[0]["detail"]
    assert lines[1]["result"] == "SKIP"


def test_an_unknown_check_is_one_sentence_and_exit_2(tmp_path):
    done = _run(tmp_path, "--only", "cuda,warp-drive")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "gpu-check: --only names warp-drive, which is not a check; choose from "
        "cuda, hf-lora, unsloth-4bit, hf-qlora, accelerate, llama-cuda."
    )
