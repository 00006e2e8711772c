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
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--files", str(f)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"transformers: locked 0.0.1 in shared.txt, installed {md.version('transformers')}",
        "no-such-package-persona-tui: locked 1.0 in shared.txt, not installed",
    ]


def test_a_malformed_lock_line_is_named(tmp_path):
    f = tmp_path / "shared.txt"
    f.write_text("rich>=13\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--files", str(f)],
                          capture_output=True, text=True, timeout=60)
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
