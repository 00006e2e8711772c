"""The distributed path executed: a run with `training.processes = 2` on a machine without a GPU
trains through `accelerate launch` as two CPU processes joined over gloo (a tiny Llama the test
makes), checkpoints, is cancelled through the job protocol, and resumes from the checkpoint to a
finished adapter.

What this does not prove: NCCL between GPUs, several machines (`accelerate_config`), DeepSpeed or
FSDP; those need the hardware (scripts/gpu-check runs the 2-GPU case where there are two GPUs).
"""

from __future__ import annotations

import json
import shlex

import pytest

from supervisor import jobs
from train_fixtures import CHATS, events_of, make_session, tiny_llama, tiny_run, wait_for
from trainers.train.hardware import cuda_count
from trainers.train.job import LAUNCH_FILE, accelerate_command, create_train_job, launch_processes, resume_train_job
from trainers.train.reader import checkpoint_complete, checkpoint_step, last_checkpoint

pytestmark = pytest.mark.slow


def test_processes_setting_decides_the_launch():
    assert launch_processes(0, 0) == 0 and launch_processes(0, 1) == 0  # one plain process
    assert launch_processes(0, 4) == 4  # every visible GPU
    assert launch_processes(2, 0) == 2 and launch_processes(2, 8) == 2  # the run's own number


def test_cpu_launch_command_uses_torchrun_with_its_own_port(tmp_path):
    cmd = accelerate_command(tmp_path / "j", 2, "bf16", python="py", on_cpu=True, port=40001)
    assert shlex.join(cmd).startswith(
        "py -m accelerate.commands.launch --multi_gpu --num_machines 1 --num_processes 2 "
        "--main_process_port 40001 --mixed_precision no -m trainers.train.job --rank-worker"
    )


@pytest.mark.skipif(cuda_count() > 0, reason="the CPU-process launch is what a machine without a GPU runs")
def test_two_cpu_processes_train_checkpoint_cancel_and_resume(tmp_path, monkeypatch):
    model = tiny_llama(tmp_path / "tiny-llama")
    run = tiny_run(
        "dist", ["chats"], max_steps=16, save_steps=2, processes=2, num_threads=1, gradient_checkpointing=True
    )  # as big models on GPUs train
    run.base_model = str(model)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    job_dir = create_train_job(sf, "dist")

    # 1. A detached worker launches two ranks; rank 0 reports a world of 2 and checkpoints.
    jobs.start_job(job_dir)
    launch = wait_for(lambda: events_of(job_dir, "launch"), timeout=60, what="the launch event")[0]
    assert launch["processes"] == 2 and launch["cpu"] is True
    line = (job_dir / LAUNCH_FILE).read_text()
    assert "accelerate.commands.launch" in line and "--num_processes 2" in line
    begin = wait_for(lambda: events_of(job_dir, "train_begin"), timeout=300, what="the ranks to begin")[0]
    assert begin["world_size"] == 2 and begin["device"] == "cpu" and begin["resumed_from"] is None
    wait_for(lambda: events_of(job_dir, "checkpoint"), timeout=300, what="the first checkpoint")

    # 2. Cancel through the job protocol: both ranks stop on the same step after a checkpoint.
    assert jobs.cancel_job(job_dir)
    status = wait_for(lambda: (s := jobs.read_status(job_dir)).terminal and s, timeout=300, what="the cancel")
    assert status.state == "cancelled", status.error
    end = events_of(job_dir, "train_end")[-1]
    stopped = end["step"]
    assert end["state"] == "cancelled" and 2 <= stopped < 16
    ckpts = job_dir / "checkpoints"
    assert last_checkpoint(ckpts) == ckpts / f"checkpoint-{stopped}" and checkpoint_complete(
        ckpts / f"checkpoint-{stopped}"
    )
    assert not (job_dir / "adapter").exists()
    log = jobs.log_tail(job_dir, 400)
    assert "[rank 0]" in log and "[rank 1]" in log  # two processes did the work

    # 3. Resume: two new ranks continue from that checkpoint to the end and save the adapter.
    resume_train_job(job_dir)
    status = wait_for(lambda: (s := jobs.read_status(job_dir)).terminal and s, timeout=600, what="the resumed run")
    assert status.state == "finished", status.error + "\n" + jobs.log_tail(job_dir, 30)
    begins = events_of(job_dir, "train_begin")
    assert len(begins) == 2 and begins[1]["resumed_from"] == stopped and begins[1]["world_size"] == 2
    resumed_steps = [e["step"] for e in events_of(job_dir, "step")][-(16 - stopped) :]
    assert resumed_steps == list(range(stopped + 1, 17))
    assert checkpoint_step(last_checkpoint(ckpts)) == 16
    adapter = json.loads((job_dir / "adapter" / "RUN.json").read_text())
    assert adapter["step"] == 16 and (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert len(events_of(job_dir, "launch")) == 2
