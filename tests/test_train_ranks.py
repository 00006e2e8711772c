"""Ranks of a multi-process run agree to stop together (a real 2-process gloo group on the CPU),
and a cancel that kills by force also kills the process groups a worker started for its ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from supervisor import jobs

ROOT = Path(__file__).resolve().parent.parent

RANKS = textwrap.dedent(
    """
    import sys, torch.distributed as dist
    from trainers.train.metrics import _all_ranks_agree
    rank, store = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    # Only rank 1 saw the cancel file at this step; both must stop at it.
    first = _all_ranks_agree(rank == 1)
    second = _all_ranks_agree(False)
    print(f"rank {rank}: {first} {second}", flush=True)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_ranks_stop_at_the_same_step_when_one_is_asked(tmp_path):
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANKS, str(r), str(store)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert sorted(o.strip() for o, _ in outs) == ["rank 0: True False", "rank 1: True False"]


def test_a_single_process_decides_alone():
    from trainers.train.metrics import _all_ranks_agree

    assert _all_ranks_agree(True) is True and _all_ranks_agree(False) is False


def test_force_cancel_kills_the_groups_a_worker_registered(tmp_path, monkeypatch):
    job = jobs.create_job(tmp_path, "hang", {}, worker="jobs_fixture_worker")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    jobs.register_child_group(job, child.pid)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    try:
        jobs.start_job(job)
        deadline = time.monotonic() + 120  # a worker at nice +10 on a busy machine starts slowly
        while not (job / "hanging").exists():
            assert time.monotonic() < deadline, "the worker never started hanging"
            time.sleep(0.05)
        assert jobs.cancel_job(job, force=True)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
