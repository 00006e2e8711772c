"""Training metrics as events: the worker writes one JSON line per logging step, viewers read.

`RunMetrics` turns what a trainer logs into the events of `events.jsonl` (step, epoch, loss,
eval loss, learning rate, grad norm, tokens/s, elapsed, ETA, memory) and the job's progress; it
knows nothing of transformers, so any backend (the OpenAI poller too) reports through it.
`make_callback` wraps it as a transformers `TrainerCallback`, which also stops the loop when the
job is cancelled (asking the trainer to save a checkpoint at that step first).

Event kinds written here:
  {"event": "train_begin", "max_steps", "resumed_from", "device", "precision", ...}
  {"event": "step", "step", "max_steps", "epoch", "loss", "lr", "grad_norm", "tokens_per_s",
   "elapsed", "eta", "rss_mb", "peak_mb", "gpu_peak_mb"?}
  {"event": "eval", "step", "eval_loss"}
  {"event": "checkpoint", "step", "path"}
  {"event": "train_end", "state", "step", "train_loss", "s_per_step", "tokens_per_s", "peak_mb", ...}
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol


class Reporter(Protocol):
    """The part of `supervisor.jobs.JobReporter` that metrics need."""

    @property
    def cancelled(self) -> bool: ...

    def event(self, **fields: Any) -> None: ...
    def progress(self, done: float, total: float | None = None, message: str = "") -> None: ...
    def log(self, msg: str) -> None: ...


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rss_mb() -> float:
    """This process's resident memory now (psutil), in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # noqa: BLE001
        return 0.0


def peak_rss_mb() -> float:
    """The highest resident memory this process has had (the kernel keeps it), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def gpu_peak_mb() -> float | None:
    """Peak GPU memory torch allocated in this process, or None without CUDA (or torch not loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        return None
    return None


class RunMetrics:
    """Turns trainer logs into events; keeps the numbers a run summary needs."""

    # Logs that arrive with these keys are copied into step events under the given names.
    EXTRA_KEYS = {
        "rewards/accuracies": "reward_accuracy",
        "rewards/margins": "reward_margin",
        "mean_token_accuracy": "token_accuracy",
    }

    def __init__(
        self,
        job: Reporter,
        max_steps: int,
        start_step: int = 0,
        elapsed_before: float = 0.0,
        tokens_before: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.max_steps = max_steps
        self.start_step = start_step
        self.elapsed_before = elapsed_before
        self.clock = clock
        self.t0 = clock()
        self.last_step = start_step
        self.last_tokens = tokens_before
        self.tokens_start = tokens_before
        self.last_time = self.t0
        self.recent: deque[tuple[float, int]] = deque(maxlen=20)  # (time, step) for the ETA
        self.recent.append((self.t0, start_step))
        self.losses: list[tuple[int, float]] = []
        self.eval_losses: list[tuple[int, float]] = []
        self.peak_rss = 0.0
        self.tokens_per_s: float | None = None

    def begin(self, step: int | None = None, tokens_seen: int | None = None) -> None:
        """The loop starts now: data preparation and model set-up are not training time."""
        self.t0 = self.last_time = self.clock()
        if step is not None:
            self.start_step = self.last_step = step
        if tokens_seen is not None:
            self.tokens_start = self.last_tokens = tokens_seen
        self.recent.clear()
        self.recent.append((self.t0, self.last_step))

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + (self.clock() - self.t0)

    def eta(self, step: int) -> float | None:
        if not self.max_steps or len(self.recent) < 2:
            return None
        (t_a, s_a), (t_b, s_b) = self.recent[0], self.recent[-1]
        if s_b <= s_a:
            return None
        return max(0.0, (self.max_steps - step) * (t_b - t_a) / (s_b - s_a))

    def memory(self) -> dict[str, float]:
        now = rss_mb()
        self.peak_rss = max(self.peak_rss, now, peak_rss_mb())
        out = {"rss_mb": round(now, 1), "peak_mb": round(self.peak_rss, 1)}
        gpu = gpu_peak_mb()
        if gpu is not None:
            out["gpu_peak_mb"] = round(gpu, 1)
        return out

    def on_log(
        self, step: int, logs: dict[str, Any], epoch: float | None = None, tokens_seen: int | None = None
    ) -> None:
        """One trainer log: a train step, an evaluation, or the final summary (ignored here)."""
        if "eval_loss" in logs:
            loss = _finite(logs["eval_loss"])
            if loss is not None:
                self.eval_losses.append((step, loss))
            self.job.event(event="eval", step=step, eval_loss=loss, epoch=_finite(epoch))
            return
        if "loss" not in logs:
            return
        now = self.clock()
        loss = _finite(logs.get("loss"))
        if loss is not None:
            self.losses.append((step, loss))
        if tokens_seen is not None and now > self.last_time and tokens_seen >= self.last_tokens:
            self.tokens_per_s = (tokens_seen - self.last_tokens) / (now - self.last_time)
            self.last_tokens = tokens_seen
        s_per_step = (now - self.last_time) / (step - self.last_step) if step > self.last_step else None
        self.last_time, self.last_step = now, step
        self.recent.append((now, step))
        fields: dict[str, Any] = {
            "event": "step",
            "step": step,
            "max_steps": self.max_steps,
            "epoch": _finite(epoch),
            "loss": loss,
            "lr": _finite(logs.get("learning_rate")),
            "grad_norm": _finite(logs.get("grad_norm")),
            "tokens_per_s": round(self.tokens_per_s, 2) if self.tokens_per_s is not None else None,
            "s_per_step": round(s_per_step, 3) if s_per_step is not None else None,
            "elapsed": round(self.elapsed, 2),
            "eta": round(e, 1) if (e := self.eta(step)) is not None else None,
        }
        if tokens_seen is not None:
            fields["tokens"] = int(tokens_seen)
        for key, name in self.EXTRA_KEYS.items():
            if key in logs:
                fields[name] = _finite(logs[key])
        fields.update(self.memory())
        if loss is None and "loss" in logs:
            fields["note"] = "loss is not finite"
        self.job.event(**fields)
        message = f"step {step}/{self.max_steps}" + (f" loss {loss:.4f}" if loss is not None else " loss nan")
        self.job.progress(step, self.max_steps or None, message)

    def on_save(self, step: int, path: str) -> None:
        self.job.event(event="checkpoint", step=step, path=path)

    def summary(self, step: int) -> dict[str, Any]:
        """Numbers for the train_end event and the job result."""
        steps = step - self.start_step
        wall = self.clock() - self.t0
        tokens = self.last_tokens - self.tokens_start
        mem = self.memory()
        return {
            "step": step,
            "steps_this_attempt": steps,
            "train_loss": self.losses[-1][1] if self.losses else None,
            "first_loss": self.losses[0][1] if self.losses else None,
            "eval_loss": self.eval_losses[-1][1] if self.eval_losses else None,
            "s_per_step": round(wall / steps, 3) if steps > 0 else None,
            "tokens_per_s": round(tokens / wall, 2) if tokens and wall > 0 else None,
            "elapsed": round(self.elapsed, 2),
            **mem,
        }


def _all_ranks_agree(stop: bool) -> bool:
    """Under `accelerate launch`, stop when any rank was asked to: ranks that read the cancel
    file a step apart would otherwise wait for each other in a collective forever."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return stop
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    flag = torch.tensor([1 if stop else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def make_callback(
    metrics: RunMetrics, should_stop: Callable[[], bool], on_step: Callable[[int], None] | None = None
) -> Any:
    """A transformers `TrainerCallback` feeding `metrics` and stopping on cancel (checkpoint first).

    `on_step(global_step)` runs after every optimizer step (the CPU thread governor uses it).
    """
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        """Events per log; on cancel, save a checkpoint at this step and leave the loop."""

        stopped_at: int | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
            if not state.is_world_process_zero or not logs:
                return
            metrics.on_log(state.global_step, logs, epoch=state.epoch, tokens_seen=state.num_input_tokens_seen or None)

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.max_steps:
                metrics.max_steps = state.max_steps
            metrics.begin(tokens_seen=state.num_input_tokens_seen or None)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if on_step is not None:
                on_step(state.global_step)
            if _all_ranks_agree(should_stop()):
                self.stopped_at = state.global_step
                control.should_save = True
                control.should_training_stop = True
                control.should_evaluate = False

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero:
                metrics.on_save(state.global_step, f"{args.output_dir}/checkpoint-{state.global_step}")

    return JobCallback()
