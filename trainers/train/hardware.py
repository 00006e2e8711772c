"""What the machine offers a run: GPUs, bf16, threads, memory; and the settings "auto" resolves to.

Kept apart from the backends so validation (does this machine have a GPU for unsloth? CUDA for
8-bit Adam?) and the Train pane's machine panel can ask without building a trainer. torch is
imported only inside functions.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Device:
    """Where a run trains and in which number format."""

    kind: str  # "cuda" | "cpu"
    count: int  # GPUs visible (0 on a CPU)
    precision: str  # "fp32" | "bf16" | "fp16" (resolved, never "auto")
    optimizer: str  # resolved optimizer name for transformers' `optim`
    threads: int  # torch intra-op threads (CPU)
    batch_size: int = 2  # micro-batch: examples per forward pass (resolved, never "auto")
    grad_accum: int = 1  # forward passes per optimizer step (lowered when auto raises batch_size)
    notes: tuple[str, ...] = ()  # what each "auto" chose and why, for the job's log and manifest

    @property
    def autocast_bf16(self) -> bool:
        return self.precision == "bf16"


# Device nodes a GPU driver makes: NVIDIA's, WSL2's GPU passthrough (CUDA on Windows hosts), and
# AMD's ROCm (whose torch build answers through torch.cuda too).
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def gpu_driver_present() -> bool:
    """Whether a GPU kernel driver is there at all: without one no torch build can see a GPU, and
    asking torch would cost its whole import (seconds) in the app when it starts a job."""
    return any(Path(p).exists() for p in GPU_DRIVER_PATHS)


def cuda_count() -> int:
    """GPUs torch can use; 0 without a CUDA build or driver (never raises)."""
    if "torch" not in sys.modules and not gpu_driver_present():
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver is the same as no GPU for a run
        return 0


def cuda_bf16() -> bool:
    if "torch" not in sys.modules and not gpu_driver_present():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001
        return False


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AMX or AVX512-BF16), so autocast can pay off."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except Exception:  # noqa: BLE001
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- threads


def busy_cpu_seconds() -> float | None:
    """CPU-seconds every process of the machine has used since boot, summed over all CPUs
    (/proc/stat: user, nice, system, irq, softirq, steal; idle and iowait left out)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            parts = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    if not parts or parts[0] != "cpu" or len(parts) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks


def own_cpu_seconds(pid: int | None = None) -> float:
    """CPU-seconds used by this process (all its threads) and its live descendants; those are
    ours, never "other work" that a thread count should leave room for."""
    try:
        import psutil

        me = psutil.Process(pid)
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total
    except Exception:  # noqa: BLE001 - without psutil, this process and the children it waited for
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system


class OtherCpuUse:
    """How many CPUs processes *other than ours* kept busy between two readings.

    The 1-minute load average cannot tell: it counts our own threads and decays for minutes, so
    work that just finished (a benchmark's previous row, our own model loading) reads as other
    load and a run would train on one thread of an idle machine. This reads the machine's busy
    CPU time (/proc/stat) and subtracts this process tree's own CPU time over the same interval.
    The readers are arguments so the arithmetic can be tested without a machine's noise.
    """

    def __init__(self, busy: Any = busy_cpu_seconds, own: Any = own_cpu_seconds, clock: Any = time.monotonic) -> None:
        self._busy, self._own, self._clock = busy, own, clock
        self._last = self._reading()

    def _reading(self) -> tuple[float | None, float, float]:
        return self._busy(), self._own(), self._clock()

    def others(self) -> float | None:
        """Busy logical CPUs of other processes since the last call (or since made); None
        when the machine's CPU time cannot be read or no time has passed."""
        busy0, own0, t0 = self._last
        busy1, own1, t1 = self._last = self._reading()
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


def other_cpu_use(window_s: float = 0.5) -> float | None:
    """Logical CPUs other processes use now, measured over `window_s` (None when unreadable)."""
    meter = OtherCpuUse()
    time.sleep(window_s)  # a measurement window, not a wait for a condition
    return meter.others()


def auto_threads(others: float | None = None) -> int:
    """Threads for torch on a CPU: one per physical core that *other* processes leave idle.

    torch's OpenMP threads meet at a barrier after every operation, so a thread whose core is
    busy with another process stalls the others for a scheduler slice: measured here with the
    load average at 8 on 2 cores, 2 threads took 27-44 s per step where 1 took 2-3 s. `others`
    is the logical CPUs other processes keep busy (`OtherCpuUse`); None measures it now. Where
    it cannot be read (no /proc), the 1-minute load average stands in.
    """
    cores = physical_cores()
    if others is None:
        others = other_cpu_use()
    if others is None:
        try:
            others = os.getloadavg()[0]
        except OSError:
            return cores
    logical = os.cpu_count() or cores
    busy_cores = others * cores / max(cores, logical)  # two hyperthreads busy = one core
    return max(1, min(cores, cores - int(busy_cores + 0.5)))


# OpenMP threads that spin at barriers instead of sleeping: measured 1.37x faster on an idle
# 2-core machine (bench/train.py, 2026-12-01), but 27-44 s/step instead of ~5 s when other work
# shares the cores. Read by libgomp once, when torch starts, so it is chosen before torch is
# imported, from what other processes use at that moment; the thread governor then drops to
# fewer threads when other work comes, where one thread has no barrier left to spin at.
OMP_IDLE_BELOW = 0.25  # logical CPUs of other work under which the machine counts as idle


def auto_omp_wait_policy(others: float | None = None) -> str:
    """ "ACTIVE" when other processes leave the cores idle, else "PASSIVE"."""
    if others is None:
        others = other_cpu_use()
    return "ACTIVE" if others is not None and others < OMP_IDLE_BELOW else "PASSIVE"


def bitsandbytes_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


# ----------------------------------------------------------------------------- micro-batch

# On a CPU, `precision = "auto"` picks bf16 autocast only where bench/train.py measured it faster
# at equal loss: a CPU with bf16 matmul hardware *and* micro-batches big enough to amortise the
# casts. Below this many examples per forward pass fp32 wins (PLATFORM.md: no gain at batch 2).
CPU_BF16_MIN_MICRO_BATCH = 8
# `batch_size = "auto"` on a CPU: the largest micro-batch up to this that divides the effective
# batch and fits in RAM. bench/train.py: 8 x 1 bf16 ran 1.67x the 2 x 4 fp32 baseline (~270
# tokens/s) at equal loss; PLATFORM.md measured ~250 tokens/s at 16 a pass: past 8 a bigger batch
# only holds more memory.
CPU_MAX_AUTO_MICRO_BATCH = 8
# On a GPU the whole effective batch in one forward pass where it fits: no accumulation.
GPU_MAX_AUTO_MICRO_BATCH = 256
# The memory estimate is low for bf16 autocast on a CPU (3.4 GiB said, ~7 GiB measured at
# micro-batch 8: autocast keeps both precisions), so a CPU micro-batch must fit twice over.
CPU_ESTIMATE_FACTOR = 2.0
GPU_FREE_SHARE = 0.9  # of the GPU memory free now: the allocator fragments, other work may grow


def divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def auto_micro_batch(effective: int, cap: int, fits: Any = None, precision_for: Any = None) -> int:
    """The largest micro-batch <= cap that divides `effective` (so grad_accum stays whole and the
    effective batch is kept exactly) and `fits(micro, precision)`; 1 when none does."""
    for m in divisors_desc(max(1, effective)):
        if m > cap:
            continue
        if fits is None or fits(m, precision_for(m) if precision_for else "fp32"):
            return m
    return 1


def resolve_device(
    precision: str,
    optimizer: str,
    num_threads: int,
    batch_size: int | str = 2,
    load_in_4bit: bool = False,
    *,
    grad_accum: int = 1,
    fits: Any = None,
    others: float | None = None,
) -> Device:
    """Turn the spec's "auto" settings into what this machine will run.

    `batch_size = "auto"` keeps the effective batch `AUTO_BASE_MICRO_BATCH x grad_accum`
    (sessions.run_spec) and re-splits it: the largest micro-batch that divides it, fits
    (`fits(micro, precision) -> bool`, from trainers.train.memory_estimate; None = assume it fits) and
    is at most CPU_MAX_AUTO_MICRO_BATCH on a CPU; grad_accum falls to keep the product. An
    explicit integer is used as given. `others`: logical CPUs other processes use (None = measure).
    """
    from sessions.run_spec import effective_batch_of

    effective = effective_batch_of(batch_size, grad_accum)
    notes: list[str] = []
    count = cuda_count()
    if count:
        if precision == "auto":
            precision = "bf16" if cuda_bf16() else "fp16"
        if optimizer == "auto":
            optimizer = "adamw_8bit" if bitsandbytes_available() else "adamw_torch"
        if batch_size == "auto" and fits is None:  # the model's size is not known yet: the old default
            from sessions.run_spec import AUTO_BASE_MICRO_BATCH

            micro = max(m for m in divisors_desc(effective) if m <= AUTO_BASE_MICRO_BATCH)
            notes.append(
                f"micro-batch auto: {micro} x accumulation {effective // micro} (effective batch {effective}; "
                f"the base model's config.json cannot be read yet to size it for the GPU)"
            )
        elif batch_size == "auto":
            micro = auto_micro_batch(effective, GPU_MAX_AUTO_MICRO_BATCH, fits, lambda m: precision)
            notes.append(
                f"micro-batch auto: {micro} x accumulation {effective // micro} (effective batch {effective}; "
                f"the largest that divides it and fits the GPU's free memory)"
            )
        else:
            micro = int(batch_size)
        return Device("cuda", count, precision, optimizer, 0, micro, effective // micro, tuple(notes))
    fast_bf16 = cpu_fast_bf16()

    def cpu_precision(micro: int) -> str:
        if precision != "auto":
            return precision
        return "bf16" if fast_bf16 and micro >= CPU_BF16_MIN_MICRO_BATCH else "fp32"

    if batch_size == "auto":
        micro = auto_micro_batch(effective, CPU_MAX_AUTO_MICRO_BATCH, fits, cpu_precision)
        notes.append(
            f"micro-batch auto: {micro} x accumulation {effective // micro} (effective batch {effective}; "
            f"the largest up to {CPU_MAX_AUTO_MICRO_BATCH} that divides it and fits in RAM)"
        )
    else:
        micro = int(batch_size)
    if precision == "auto":
        chosen = cpu_precision(micro)
        why = (
            (
                "the CPU has bf16 matmul hardware ("
                + ("AMX" if "amx_bf16" in cpu_flags() else "AVX512-BF16")
                + f") and the micro-batch is >= {CPU_BF16_MIN_MICRO_BATCH}"
            )
            if chosen == "bf16"
            else (f"bf16 autocast pays only with AMX/AVX512-BF16 and micro-batches >= {CPU_BF16_MIN_MICRO_BATCH}")
        )
        notes.append(f"precision auto: {chosen} ({why})")
        precision = chosen
    if optimizer == "auto":
        optimizer = "adamw_torch"
    if num_threads:
        threads = num_threads
    else:
        if others is None:
            others = other_cpu_use()
        threads = auto_threads(others)
        seen = f"other processes use {others:.1f} CPUs" if others is not None else "load average"
        notes.append(f"threads auto: {threads} of {physical_cores()} cores ({seen})")
    return Device("cpu", 0, precision, optimizer, threads, micro, effective // micro, tuple(notes))


def memory_fits(run: Any, device_kind: str) -> Any:
    """`fits(micro, precision)` for `resolve_device`, from the base model's config.json and the
    device's memory (trainers.train.memory_estimate); None when the config cannot be read yet (a GGUF
    base before its first use), which resolve_device takes as "fits"."""
    from sessions.run_spec import wants_4bit
    from trainers.train import memory_estimate as me

    config = me.model_config(run.base_model)
    if config is None:
        return None
    total, free, _ = me.device_memory(device_kind)
    room = (free if free is not None else total) * (GPU_FREE_SHARE if device_kind == "cuda" else 1.0)
    factor = 1.0 if device_kind == "cuda" else CPU_ESTIMATE_FACTOR
    t = run.training

    def fits(micro: int, precision: str) -> bool:
        try:
            need = me.estimate(
                config,
                device=device_kind,
                precision=precision,
                load_in_4bit=wants_4bit(run),
                lora_r=run.lora.r,
                target_modules=list(run.lora.target_modules),
                batch_size=micro,
                seq_len=t.max_seq_length,
                gradient_checkpointing=t.gradient_checkpointing,
            )
        except me.ConfigError:
            return True
        return need.total * factor <= room

    return fits


# "MICROxACCUM" the launcher of a multi-GPU run resolved once for all its ranks.
RESOLVED_BATCH_ENV = "PERSONA_TUI_RESOLVED_BATCH"


def checkpoint_micro_batch(checkpoint: Any) -> int | None:
    """The micro-batch a checkpoint was trained with (the Trainer's trainer_state.json)."""
    import json

    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    value = state.get("train_batch_size") if isinstance(state, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def resolve_for(
    run: Any, load_in_4bit: bool | None = None, others: float | None = None, resume_from: Any = None
) -> Device:
    """`resolve_device` for a sessions.model.RunSpec on this machine (memory checked for an
    automatic micro-batch; a rank of a multi-GPU run takes the split its launcher chose; a
    resumed run keeps its checkpoint's split, so the data order and schedule go on unchanged)."""
    import dataclasses

    from sessions.run_spec import wants_4bit

    t = run.training
    four = wants_4bit(run) if load_in_4bit is None else load_in_4bit
    fits = memory_fits(run, "cuda" if cuda_count() else "cpu") if t.batch_size == "auto" else None
    device = resolve_device(
        t.precision, t.optimizer, t.num_threads, t.batch_size, four, grad_accum=t.grad_accum, fits=fits, others=others
    )
    kept = checkpoint_micro_batch(resume_from) if resume_from is not None and t.batch_size == "auto" else None
    effective = device.batch_size * device.grad_accum
    if kept and effective % kept == 0 and kept != device.batch_size:
        device = dataclasses.replace(
            device,
            batch_size=kept,
            grad_accum=effective // kept,
            notes=tuple(
                f"micro-batch auto: {kept} x accumulation {effective // kept} (kept from the checkpoint it resumes)"
                if n.startswith("micro-batch auto")
                else n
                for n in device.notes
            ),
        )
    given = os.environ.get(RESOLVED_BATCH_ENV, "")
    if t.batch_size == "auto" and "LOCAL_RANK" in os.environ and given:
        micro, accum = (int(x) for x in given.split("x"))
        device = dataclasses.replace(
            device,
            batch_size=micro,
            grad_accum=accum,
            notes=tuple(
                f"micro-batch auto: {micro} x accumulation {accum} (chosen by the launcher for every rank)"
                if n.startswith("micro-batch auto")
                else n
                for n in device.notes
            ),
        )
    return device


def machine_problems(backend: str, precision: str, optimizer: str, load_in_4bit: bool | None) -> list[str]:
    """What this machine cannot do of a run's settings, as sentences naming the field."""
    problems = []
    gpus = cuda_count()
    if backend == "unsloth":
        if not gpus:
            problems.append(
                "backend is unsloth, which trains only on an NVIDIA GPU with CUDA, and this machine has none; "
                'use backend = "hf" to train on the CPU.'
            )
        else:
            import importlib.util

            if importlib.util.find_spec("unsloth") is None:
                problems.append(
                    "backend is unsloth, but the unsloth package is not installed; install it with "
                    "pip install unsloth (scripts/setup does so on a GPU machine)."
                )
    if backend in ("hf", "unsloth") and not gpus:
        if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
            problems.append(
                f"training.optimizer is {optimizer}, which needs a CUDA GPU (bitsandbytes); use adamw_torch or auto on a CPU."
            )
        if precision == "fp16":
            problems.append("training.precision is fp16, which trains only on a GPU; use bf16, fp32 or auto on a CPU.")
        if load_in_4bit:
            problems.append("training.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false on a CPU.")
    if backend == "hf" and gpus:
        if optimizer in ("adamw_8bit", "paged_adamw_8bit") and not bitsandbytes_available():
            problems.append(
                f"training.optimizer is {optimizer}, which needs bitsandbytes; install it or use adamw_torch."
            )
        if load_in_4bit and not bitsandbytes_available():
            problems.append("training.load_in_4bit needs bitsandbytes; install it or set load_in_4bit = false.")
        if precision == "bf16" and not cuda_bf16():
            problems.append("training.precision is bf16, which this GPU does not support; use fp16 or auto.")
    return problems
