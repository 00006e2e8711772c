"""The pinned stack (locks/, written by scripts/lock, installed by scripts/setup).

The environment these tests run in must be exactly the lock, and the lock must be exactly what a
GPU box can install: CPU CI then tests the transformers/trl/peft/datasets/accelerate GPU users run.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "lock"


def _load_lock_script():
    loader = importlib.machinery.SourceFileLoader("persona_tui_lock_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


lock = _load_lock_script()


def test_installed_environment_matches_the_lock():
    files = lock.installed_lock_files()
    assert lock.SHARED in files
    bad = lock.mismatches(files)
    assert not bad, "this environment differs from the lock (run scripts/setup):\n" + "\n".join(bad)


def test_check_names_each_package_off_the_lock(tmp_path):
    """`scripts/lock --check` exits 1 and names a wrong version and a missing package; a pin
    without a local label accepts the installed build's label (torch 2.13.0 vs 2.13.0+cpu)."""
    import importlib.metadata as md

    torch_installed = md.version("torch")
    f = tmp_path / "shared.txt"
    f.write_text(
        "# a comment\n"
        f"torch=={torch_installed.split('+')[0]}\n"
        f"Typing_Extensions=={md.version('typing_extensions')}\n"
        "transformers==0.0.1\n"
        "no-such-package-persona-tui==1.0\n"
    )
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--files", str(f)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"transformers: locked 0.0.1 in shared.txt, installed {md.version('transformers')}",
        "no-such-package-persona-tui: locked 1.0 in shared.txt, not installed",
    ]


def test_a_malformed_lock_line_is_named(tmp_path):
    f = tmp_path / "shared.txt"
    f.write_text("rich>=13\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--files", str(f)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert f"{f}:1: expected `name==version`" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("extras, files", [(["dev"], ["shared"]), (["gpu"], ["shared", "gpu"])])
def test_every_pyproject_requirement_is_locked_within_its_range(extras, files):
    """A dependency added to pyproject.toml without rerunning scripts/lock fails here, offline."""
    pins = {}
    for name in files:
        pins.update(lock.read_lock(lock.SHARED if name == "shared" else lock.GPU))
    wrong = []
    for text in lock.requirements(extras):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = pins.get(lock.normalize(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            wrong.append(f"{text}: locked {have}")
    assert not wrong, "pyproject.toml and locks/ disagree (run python3 scripts/lock):\n" + "\n".join(wrong)


def test_shared_and_gpu_locks_do_not_overlap_and_pin_the_stack():
    shared, gpu = lock.read_lock(lock.SHARED), lock.read_lock(lock.GPU)
    assert not set(shared) & set(gpu)
    # The packages whose internals the training code leans on are shared, so CPU CI tests them.
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "huggingface-hub", "hf-xet"):
        assert name in shared, name
    assert "unsloth" in gpu and "bitsandbytes" in gpu and "triton" in gpu


def _registry_reachable() -> str | None:
    try:
        urllib.request.urlopen(f"{lock.PYPI.rstrip('/')}/pip/", timeout=15).close()
    except (urllib.error.URLError, OSError) as e:
        return f"the package registry {lock.PYPI} cannot be reached ({e})"
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_install_resolves_to_exactly_the_lock():
    """What a GPU box installs (torch==2.13.0 from PyPI, the project with `gpu` and `dev`),
    resolved by pip against PyPI with the lock's pins as constraints. If unsloth (or anything)
    cannot accept a locked shared version, pip finds no resolution and this fails naming it; if
    the resolution needs a package the lock lacks, or no longer needs one it has, it fails too."""
    reason = _registry_reachable()
    if reason:
        pytest.skip(reason)
    shared, gpu = lock.read_lock(lock.SHARED), lock.read_lock(lock.GPU)
    pins = {**shared, **gpu}
    try:
        resolved = lock.gpu_resolution([f"{n}=={v}" for n, v in pins.items()])
    except RuntimeError as e:
        pytest.fail(f"the GPU install cannot take the locked versions (run python3 scripts/lock):\n{e}")
    differ = {n: (pins.get(n), v) for n, v in resolved.items() if pins.get(n) != v}
    assert not differ, f"resolved differently from the lock (locked, resolved): {differ}"
    unused = sorted(set(pins) - set(resolved))
    assert not unused, f"locked but not part of the GPU install (run python3 scripts/lock): {unused}"


# ----------------------------------------------------------------------------- scripts/setup's decisions
SETUP = ROOT / "scripts" / "setup"
# What `setup --plan` runs, and nothing else: no tmux, go, nvidia-smi or nvcc unless a test adds one.
_TOOLS = ("bash", "sh", "sha256sum", "cut", "dirname", "sed")


def _plan(
    tmp_path: Path, *, tools: dict[str, str] | None = None, ci: bool = False, dev: bool = False
) -> dict[str, str | list[str]]:
    """Run a copy of scripts/setup with --plan on a PATH of only the named tools, in a bare tree."""
    import shutil

    tree, bin_dir = tmp_path / "checkout", tmp_path / "bin"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(SETUP, tree / "scripts" / "setup")
    bin_dir.mkdir()
    for tool in _TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, script in (tools or {}).items():
        (bin_dir / name).write_text("#!/bin/sh\n" + script + "\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "CUDA_HOME": str(tmp_path / "no-cuda")}
    if ci:
        env["CI"] = "true"
    args = ["bash", str(tree / "scripts" / "setup"), "--plan"] + (["--dev"] if dev else [])
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tree.iterdir()) == ["scripts"], "--plan changed the checkout"
    plan: dict[str, str | list[str]] = {"notes": []}
    for line in proc.stdout.splitlines():
        k, v = line.split("=", 1) if not line.startswith("note: ") else ("note", line[6:])
        if k == "note":
            plan["notes"].append(v)
        else:
            plan[k] = v
    return plan


_GPU = {"nvidia-smi": 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"'}


def test_setup_plan_on_a_cpu_machine_touches_no_system_package(tmp_path):
    plan = _plan(tmp_path)
    assert plan["gpu"] == "0" and plan["locks"] == "locks/shared.txt" and plan["torch"] == "torch==2.13.0+cpu"
    assert "-DGGML_NATIVE=OFF" in plan["llama_cmake_args"] and "CUDA" not in plan["llama_cmake_args"]
    assert plan["system_packages"] == "untouched (missing: tmux golang-go)" and plan["notes"] == []


def test_setup_installs_system_packages_only_with_dev_or_ci(tmp_path):
    assert _plan(tmp_path / "ci", ci=True)["system_packages"] == "install tmux golang-go"
    assert _plan(tmp_path / "dev", dev=True)["system_packages"] == "install tmux golang-go"


def test_setup_plan_on_a_gpu_box_without_nvcc_keeps_the_cpu_llama_build_and_says_why(tmp_path):
    cpu = _plan(tmp_path / "cpu")
    plan = _plan(tmp_path / "gpu", tools=_GPU)
    assert plan["gpu"] == "1" and plan["locks"] == "locks/shared.txt locks/gpu.txt" and plan["torch"] == "torch==2.13.0"
    assert plan["llama_cmake_args"] == cpu["llama_cmake_args"] and plan["llama_wheels"] == cpu["llama_wheels"]
    assert any("no nvcc" in n for n in plan["notes"]) and any("CUDA toolkit" in n for n in plan["notes"])


def test_setup_plan_on_a_gpu_box_with_nvcc_builds_llama_with_cuda_in_its_own_folder(tmp_path):
    cpu = _plan(tmp_path / "cpu")
    plan = _plan(tmp_path / "gpu", tools={**_GPU, "nvcc": "exit 0"})
    assert plan["llama_cmake_args"] == cpu["llama_cmake_args"] + " -DGGML_CUDA=ON"
    assert plan["llama_wheels"] != cpu["llama_wheels"]
    assert any("built with CUDA" in n for n in plan["notes"])


def test_a_failing_nvidia_smi_is_no_gpu(tmp_path):
    """nvidia-smi present but no device (driver without a GPU, a container without one)."""
    plan = _plan(tmp_path, tools={"nvidia-smi": "echo 'No devices were found' >&2; exit 6", "nvcc": "exit 0"})
    assert plan["gpu"] == "0" and "CUDA" not in plan["llama_cmake_args"]
