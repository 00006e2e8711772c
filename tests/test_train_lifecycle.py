"""A detached training worker killed, resumed and cancelled: the job's files tell the story.

kill -9 -> the job reads *died*; resume (a new worker on the same directory) -> training goes on
from the checkpoint's step, events appended; cancel (SIGTERM) -> a checkpoint of the step it
stopped at, state *cancelled*.
"""

from __future__ import annotations

import os
import signal

import pytest

from supervisor import jobs
from train_fixtures import CHATS, events_of, make_session, tiny_run, wait_for
from trainers.train.job import create_train_job, resume_train_job
from trainers.train.reader import checkpoint_complete, checkpoint_step, last_checkpoint

pytestmark = pytest.mark.slow


def test_kill_resume_cancel(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_TUI_JOB_STALE_S", "1")  # a killed worker reads died after 1 s, not 10
    run = tiny_run("long", ["chats"], max_steps=200, save_steps=2, learning_rate=1e-4)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    job_dir = create_train_job(sf, "long")
    ckpts = job_dir / "checkpoints"

    # 1. A detached worker trains until its first checkpoint; kill -9 leaves a died job.
    pid = jobs.start_job(job_dir)
    wait_for(lambda: events_of(job_dir, "checkpoint"), timeout=600, what="the first checkpoint")
    os.killpg(pid, signal.SIGKILL)
    status = wait_for(
        lambda: (s := jobs.read_status(job_dir)).state == "died" and s, timeout=30, what="the died verdict"
    )
    assert "is gone and its heartbeat stopped" in status.error
    resume_from = last_checkpoint(ckpts)
    assert resume_from is not None
    step0 = checkpoint_step(resume_from)
    steps_before = [e["step"] for e in events_of(job_dir, "step")]
    assert steps_before and steps_before[0] == 1

    # 2. Resume: a new worker on the same job continues from the checkpoint's step, not from zero.
    resume_train_job(job_dir)
    wait_for(lambda: len(events_of(job_dir, "train_begin")) == 2, timeout=300, what="the resumed run to begin")
    begin = events_of(job_dir, "train_begin")[-1]
    assert begin["resumed_from"] == step0
    n_before = len(steps_before)
    wait_for(lambda: len(events_of(job_dir, "step")) >= n_before + 2, timeout=600, what="two resumed steps")
    resumed = [e["step"] for e in events_of(job_dir, "step")][n_before:]
    assert resumed[0] == step0 + 1 and resumed[1] == step0 + 2
    events = events_of(job_dir)
    assert [e.get("event") for e in events].count("requeued") == 1  # appended, not rewritten

    # 3. Cancel: the worker finishes its step, saves a checkpoint there, and ends cancelled.
    assert jobs.cancel_job(job_dir)
    status = wait_for(lambda: (s := jobs.read_status(job_dir)).terminal and s, timeout=300, what="the cancel")
    assert status.state == "cancelled", status.error
    end = events_of(job_dir, "train_end")[-1]
    assert end["state"] == "cancelled"
    stopped = end["step"]
    assert stopped > step0
    assert checkpoint_complete(ckpts / f"checkpoint-{stopped}")
    assert last_checkpoint(ckpts) == ckpts / f"checkpoint-{stopped}"
    assert not (job_dir / "adapter").exists()  # a cancelled run leaves a checkpoint, not a final adapter


def test_a_full_disk_while_checkpointing_fails_in_one_sentence_and_the_earlier_checkpoint_resumes(
    tmp_path, monkeypatch
):
    """ENOSPC in the middle of the second checkpoint: the job ends failed, naming the disk and the
    checkpoint that is still good; the session is untouched; resuming continues from that one."""
    import errno

    from transformers import Trainer

    from trainers.worker import KINDS

    run = tiny_run("disk", ["chats"], max_steps=6, save_steps=2)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    session_bytes = sf.path.read_bytes()
    job_dir = create_train_job(sf, "disk")
    real = Trainer._save_checkpoint
    calls = []

    def filling_disk(self, model, trial):
        calls.append(self.state.global_step)
        if len(calls) == 1:
            return real(self, model, trial)
        half = job_dir / "checkpoints" / f"checkpoint-{self.state.global_step}"
        half.mkdir(parents=True, exist_ok=True)
        (half / "adapter_model.safetensors").write_bytes(b"\0" * 100)  # what was written before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device", str(half / "optimizer.pt"))

    monkeypatch.setattr(Trainer, "_save_checkpoint", filling_disk)
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert status.error.startswith("the disk is full: writing ") and "optimizer.pt" in status.error
    assert "checkpoint-2" in status.error and "resuming continues from there" in status.error
    assert len(status.error.splitlines()) == 1
    assert sf.path.read_bytes() == session_bytes
    ckpts = job_dir / "checkpoints"
    assert checkpoint_complete(ckpts / "checkpoint-2") and last_checkpoint(ckpts) == ckpts / "checkpoint-2"

    monkeypatch.setattr(Trainer, "_save_checkpoint", real)  # space freed
    status = resume_train_job(job_dir, detach=False)
    assert status.state == "finished", status.error
    assert events_of(job_dir, "train_begin")[-1]["resumed_from"] == 2
    assert not (ckpts / "checkpoint-4").exists() or checkpoint_complete(ckpts / "checkpoint-4")
    assert (job_dir / "adapter" / "adapter_config.json").is_file()
