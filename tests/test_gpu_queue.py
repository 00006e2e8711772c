"""GPU choice on a shared box, with a stand-in nvidia-smi (this machine has no GPU) that prints
its documented CSV from a file the test rewrites: each GPU's free memory in the Train pane's
machine line, a run pinned to GPU 1 (`training.devices`) that waits while GPU 1 is busy, a younger
run queued behind it and cancelled while it waits, and the older one going on once memory frees.
"""

from __future__ import annotations

import json
import os

import pytest

from supervisor import jobs
from train_fixtures import CHATS, events_of, make_session, tiny_llama, tiny_run, wait_for
from trainers.train.gpus import GIB, busy_reason, gpu_states, queue_ahead
from trainers.train.job import create_train_job

BUSY = "0, NVIDIA H100 80GB HBM3, 81559, 80000, 3\n1, NVIDIA H100 80GB HBM3, 81559, 100, 97\n"
FREE = "0, NVIDIA H100 80GB HBM3, 81559, 80000, 3\n1, NVIDIA H100 80GB HBM3, 81559, 79000, 0\n"


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """nvidia-smi on PATH, answering --query-gpu with the contents of a state file."""
    state = tmp_path / "gpu-state.csv"
    state.write_text(BUSY)
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\ncat '{state}'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PERSONA_TUI_GPU_POLL_S", "0.2")
    return state


def test_each_gpus_free_memory_is_read_and_shown(smi):
    from persona_tui.panes.train import machine_text

    states = gpu_states()
    assert [(s.index, s.free_mib, s.util_pct) for s in states] == [(0, 80000, 3), (1, 100, 97)]
    assert machine_text() == "GPU0   3%  free 78.1/79.6 GiB  GPU1  97%  free 0.1/79.6 GiB"


def test_a_gpu_is_busy_while_its_free_memory_is_below_the_need(smi):
    states = gpu_states()
    assert busy_reason(states, "0", 4 * GIB) == ""
    assert busy_reason(states, "1", 4 * GIB) == "waiting for a GPU: GPU 1 has 0.1 GiB free; the run needs about 4.0 GiB"
    assert busy_reason(states, "", 4 * GIB).startswith("waiting for a GPU: GPU 1 has")  # all GPUs: GPU 1 too
    smi.write_text(FREE)
    assert busy_reason(gpu_states(), "1", 4 * GIB) == ""


@pytest.mark.slow
def test_runs_on_a_busy_gpu_wait_in_order_and_go_when_it_frees(tmp_path, smi):
    model = tiny_llama(tmp_path / "tiny-llama")
    older = tiny_run("older", ["chats"], max_steps=2, num_threads=1, devices="1")
    younger = tiny_run("younger", ["chats"], max_steps=2, num_threads=1, devices="1")
    older.base_model = younger.base_model = str(model)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [older, younger])

    # 1. GPU 1 is busy: the older run waits, saying why, with GPU 1 as its only visible device.
    a = create_train_job(sf, "older")
    jobs.start_job(a)
    wait = wait_for(lambda: events_of(a, "gpu_wait"), timeout=120, what="the older run to wait")[0]
    assert wait["devices"] == "1" and wait["reason"].startswith("waiting for a GPU: GPU 1 has 0.1 GiB free")
    status = wait_for(
        lambda: (s := jobs.read_status(a)).message.startswith("waiting") and s, timeout=30, what="the waiting message"
    )
    assert status.state == "running"
    assert json.loads((a / "manifest.json").read_text())["hardware"]["cuda_visible_devices"] == "1"

    # 2. A younger run for the same GPU queues behind it, and can be cancelled while it waits.
    b = create_train_job(sf, "younger")
    assert queue_ahead(b, "1") == [a.name] and queue_ahead(b, "0") == []
    jobs.start_job(b)
    wait_b = wait_for(lambda: events_of(b, "gpu_wait"), timeout=120, what="the younger run to queue")[0]
    assert wait_b["reason"] == f"waiting in the GPU queue behind {a.name}"
    assert jobs.cancel_job(b)
    assert (
        wait_for(lambda: (s := jobs.read_status(b)).terminal and s, timeout=60, what="the cancel").state == "cancelled"
    )
    assert not events_of(b, "train_begin")

    # 3. GPU 1 frees: the older run leaves the queue and trains.
    smi.write_text(FREE)
    status = wait_for(lambda: (s := jobs.read_status(a)).terminal and s, timeout=600, what="the older run")
    assert status.state == "finished", status.error
    kinds = [e.get("event") for e in events_of(a)]
    assert kinds.index("gpu_wait") < kinds.index("gpu_ready") < kinds.index("train_begin")


def test_devices_and_processes_are_checked_by_field():
    from sessions.model import DatasetSpec, Session
    from sessions.run_spec import device_list, validate_run

    session = Session(datasets=[DatasetSpec(id="chats", format="chat_demos")])
    run = tiny_run("r", ["chats"], devices="0,x")
    assert validate_run(run, session) == [
        "run 'r': training.devices is '0,x'; list GPU indices separated by commas, such as \"0\" or \"1,3\"."
    ]
    run = tiny_run("r", ["chats"], devices="1, 3", processes=2)
    assert validate_run(run, session) == [] and device_list(run.training.devices) == [1, 3]
    run.backend = "unsloth"
    assert validate_run(run, session) == [
        "run 'r': training.processes is 2, but only the hf backend runs through accelerate launch; set it to 0."
    ]
