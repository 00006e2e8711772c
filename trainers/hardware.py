"""What the machine offers a run: GPUs, bf16, threads; and the settings "auto" resolves to.

Kept apart from the backends so validation (does this machine have a GPU for unsloth? CUDA for
8-bit Adam?) and the Train pane's machine panel can ask without building a trainer. torch is
imported only inside functions.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Device:
    """Where a run trains and in which number format."""

    kind: str  # "cuda" | "cpu"
    count: int  # GPUs visible (0 on a CPU)
    precision: str  # "fp32" | "bf16" | "fp16" (resolved, never "auto")
    optimizer: str  # resolved optimizer name for transformers' `optim`
    threads: int  # torch intra-op threads (CPU)

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


def auto_threads(own_threads: int = 0) -> int:
    """Threads for torch on a CPU: one per physical core that other processes leave idle.

    torch's OpenMP threads meet at a barrier after every operation, so a thread whose core is
    busy with another process stalls the others for a scheduler slice: measured here with the
    load average at 8 on 2 cores, 2 threads took 27-44 s per step where 1 took 2-3 s. `own_threads`
    is what this process already runs (its share of the load average).
    """
    cores = physical_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    others = max(0.0, load - own_threads)
    return max(1, min(cores, cores - int(others + 0.5)))


def bitsandbytes_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


# On a CPU, `precision = "auto"` picks bf16 autocast only where bench/train.py measured it faster
# at equal loss: a CPU with bf16 matmul hardware *and* micro-batches big enough to amortise the
# casts. Below this many examples per forward pass fp32 wins (PLATFORM.md: no gain at batch 2).
CPU_BF16_MIN_MICRO_BATCH = 8


def resolve_device(precision: str, optimizer: str, num_threads: int, batch_size: int,
                   load_in_4bit: bool | None = False) -> Device:
    """Turn the spec's "auto" settings into what this machine will run."""
    count = cuda_count()
    if count:
        if precision == "auto":
            precision = "bf16" if cuda_bf16() else "fp16"
        if optimizer == "auto":
            optimizer = "adamw_8bit" if bitsandbytes_available() else "adamw_torch"
        return Device("cuda", count, precision, optimizer, 0)
    if precision == "auto":
        precision = "bf16" if cpu_fast_bf16() and batch_size >= CPU_BF16_MIN_MICRO_BATCH else "fp32"
    if optimizer == "auto":
        optimizer = "adamw_torch"
    threads = num_threads or auto_threads()
    return Device("cpu", 0, precision, optimizer, threads)


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
            problems.append(f"training.optimizer is {optimizer}, which needs bitsandbytes; install it or use adamw_torch.")
        if load_in_4bit and not bitsandbytes_available():
            problems.append("training.load_in_4bit needs bitsandbytes; install it or set load_in_4bit = false.")
        if precision == "bf16" and not cuda_bf16():
            problems.append("training.precision is bf16, which this GPU does not support; use fp16 or auto.")
    return problems
