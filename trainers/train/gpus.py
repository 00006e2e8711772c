"""The GPUs of a shared box as they are now, and the queue a run waits in while its GPUs are busy.

`gpu_states()` asks `nvidia-smi` (no torch, no NVML needed) for each GPU's memory and load: the
Train pane shows it, and a training job checks it before it loads anything. A run names its GPUs
with `training.devices` (what CUDA_VISIBLE_DEVICES takes; empty = all); a GPU is busy for it while
its free memory is below what the run needs (trainers.train.memory_estimate, from the base model's
config; 1 GiB when the config cannot be read). The job then waits, state *running* with the
message "waiting for GPU …", polling every PERSONA_TUI_GPU_POLL_S seconds (default 15), and can
be cancelled while it waits. Among this workspace's jobs that wait for a GPU they share, the older
goes first: a younger one waits until the older has loaded its model (its train_begin event), so
two runs do not both see the same free memory and both run out of it. Other users' processes are
seen only through the free memory they leave.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 2**20
GIB = 2**30
WAIT_FILE = "gpu-wait.json"  # in a job folder: the job waits (or waited) for these GPUs
DEFAULT_POLL_S = 15.0


@dataclass(frozen=True)
class GpuState:
    index: int
    name: str
    total_mib: int
    free_mib: int
    util_pct: int | None

    def line(self) -> str:
        util = f"{self.util_pct:3d}%  " if self.util_pct is not None else ""
        return f"GPU{self.index} {util}free {self.free_mib / 1024:.1f}/{self.total_mib / 1024:.1f} GiB"


def gpu_states() -> list[GpuState]:
    """Each NVIDIA GPU with its free memory now; [] without nvidia-smi or a GPU (never raises)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free,utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    states = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit() or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        util = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else None
        states.append(GpuState(int(parts[0]), parts[1], int(parts[2]), int(parts[3]), util))
    return states


def gpus_line(states: list[GpuState]) -> str:
    """The Train pane's machine line for the GPUs ("" without any)."""
    return "  ".join(s.line() for s in states)


def chosen(states: list[GpuState], devices: str) -> list[GpuState]:
    """The GPUs a run's `training.devices` names (every one when it is empty)."""
    from sessions.run_spec import device_list

    wanted = device_list(devices)
    return [s for s in states if not wanted or s.index in wanted]


def run_need_bytes(run: Any) -> float:
    """What the run needs on each of its GPUs (trainers.train.memory_estimate), 1 GiB when unknown."""
    from sessions.run_spec import wants_4bit
    from trainers.train.memory_estimate import ConfigError, estimate, model_config

    config = model_config(run.base_model)
    if config is None:
        return float(GIB)
    t = run.training
    try:
        need = estimate(
            config,
            device="cuda",
            precision=t.precision if t.precision in ("fp32", "fp16") else "bf16",
            load_in_4bit=wants_4bit(run),
            lora_r=run.lora.r,
            target_modules=list(run.lora.target_modules),
            batch_size=t.batch_size,
            seq_len=t.max_seq_length,
            gradient_checkpointing=t.gradient_checkpointing,
        )
    except ConfigError:
        return float(GIB)
    return float(need.total)


def busy_reason(states: list[GpuState], devices: str, need: float) -> str:
    """Why the run cannot start on its GPUs now ("" when every one has room)."""
    mine = chosen(states, devices)
    if devices and not mine:
        return ""  # none of the named GPUs is listed: let the run start and say so in its own words
    short = [s for s in mine if s.free_mib * MIB < need]
    if not short:
        return ""
    what = ", ".join(f"GPU {s.index} has {s.free_mib / 1024:.1f} GiB free" for s in short)
    return f"waiting for a GPU: {what}; the run needs about {need / GIB:.1f} GiB"


def _shares_gpus(a: str, b: str) -> bool:
    from sessions.run_spec import device_list

    da, db = set(device_list(a)), set(device_list(b))
    return not da or not db or bool(da & db)


def queue_ahead(job_dir: Path, devices: str) -> list[str]:
    """Older jobs of this workspace that wait for a GPU this one wants and have not loaded yet."""
    from supervisor import jobs

    job_dir = Path(job_dir).resolve()
    me = jobs.read_status(job_dir)
    ahead = []
    for other in jobs.jobs_root(job_dir.parent.parent).iterdir():
        if other.resolve() == job_dir or not (other / WAIT_FILE).is_file():
            continue
        try:
            theirs = json.loads((other / WAIT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        status = jobs.read_status(other)
        if (
            status.terminal
            or (status.created or 0.0) >= (me.created or 0.0)
            or not _shares_gpus(devices, str(theirs.get("devices", "")))
        ):
            continue
        events, _ = jobs.read_events(other)
        if any(e.get("event") == "train_begin" for e in events):
            continue
        ahead.append(other.name)
    return ahead


def wait_for_gpus(job: Any, run: Any) -> bool:
    """Hold the job until its GPUs have room and no older job is ahead; False when cancelled.

    Returns at once on a machine without nvidia-smi or GPUs (nothing to wait for).
    """
    states = gpu_states()
    if not states:
        return True
    devices = str(run.training.devices or "").strip()
    need = run_need_bytes(run)
    poll = float(os.environ.get("PERSONA_TUI_GPU_POLL_S") or DEFAULT_POLL_S)
    wait_file = Path(job.dir) / WAIT_FILE
    # In the queue from now until the model is loaded, waiting or not: a job created a moment later
    # must not read the free memory this one is about to take.
    wait_file.write_text(json.dumps({"devices": devices, "need_bytes": need}) + "\n", encoding="utf-8")
    waited = False
    try:
        while True:
            ahead = queue_ahead(Path(job.dir), devices)
            reason = (
                f"waiting in the GPU queue behind {', '.join(ahead)}" if ahead else busy_reason(states, devices, need)
            )
            if not reason:
                break
            if not waited:
                job.event(event="gpu_wait", devices=devices, need_gib=round(need / GIB, 2), reason=reason)
                job.log(reason)
                waited = True
            job.progress(0, None, reason)
            if job.cancelled:
                return False
            time.sleep(poll)
            if job.cancelled:
                return False
            states = gpu_states()
    finally:
        if waited:
            job.event(event="gpu_ready", devices=devices, line=gpus_line(chosen(states, devices)))
    return True
