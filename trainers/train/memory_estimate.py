"""Will a run fit? A rough memory estimate from the base model's config.json, before it starts.

    need = weights (at the run's precision, or 4-bit) + LoRA (parameters, gradients, AdamW's two
           states, all fp32) + activations (~ micro-batch x sequence x hidden x layers, less with
           gradient checkpointing) + logits (micro-batch x sequence x vocabulary, fp32) + a fixed
           overhead for the framework

compared with the chosen device: the CPU's RAM (psutil) or the first GPU's memory (nvidia-smi).
It is an estimate to catch the run that cannot fit, not a prediction of the peak. On the bundled
135M model it counts 134.5 M parameters and 4.9 M LoRA parameters (r 16, all projections), as
measured; for the whole run it says 2.3 GiB at fp32, micro-batch 2, sequence 256 (measured peak
RSS 1.7 GiB, PLATFORM.md) and 3.4 GiB at bf16 autocast, micro-batch 8 (measured ~7 GiB: autocast
keeps copies in both precisions and the allocator holds freed memory, DESIGN.md). So a run is
refused only when the estimate exceeds the device's *total* memory; over what is free now is a
warning. `estimate` and `advice` are pure
functions of their arguments (tested with configs the tests write); only `device_memory` looks at
the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.model import RunSpec

GIB = 2**30
OVERHEAD = {"cpu": 1.0 * GIB, "cuda": 1.0 * GIB}  # interpreter + torch (+ CUDA context)
# Bytes kept per token, per hidden unit, per layer for the backward pass (Korthikanti et al. 2022,
# "Reducing Activation Recomputation in Large Transformer Models": ~34 in 16-bit without the
# attention matrix, which fused attention no longer keeps); doubled in fp32.
ACT_BYTES_16 = 34
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    vocab: int
    intermediate: int
    heads: int
    kv_heads: int
    tied: bool
    head_dim: int = 0  # 0: hidden / heads (Qwen3 and others set it apart)

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        hd = self.head_dim or self.hidden // max(1, self.heads)
        h, q, kv, i = self.hidden, self.heads * hd, self.kv_heads * hd, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }


class ConfigError(ValueError):
    pass


def shape_of(config: dict[str, Any]) -> Shape:
    """The sizes that matter, from an HF config.json (text_config for multimodal wrappers)."""
    cfg: dict[str, Any] = config["text_config"] if isinstance(config.get("text_config"), dict) else config

    def get(*names: str, default: int | None = None) -> int:
        for n in names:
            if isinstance(cfg.get(n), (int, float)) and cfg.get(n):
                return int(cfg[n])
        if default is None:
            raise ConfigError(f"config.json has none of {', '.join(names)}")
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head", default=max(1, hidden // 64))
    return Shape(
        hidden=hidden,
        layers=get("num_hidden_layers", "n_layer", "num_layers"),
        vocab=get("vocab_size"),
        intermediate=get("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden),
        heads=heads,
        kv_heads=get("num_key_value_heads", default=heads),
        tied=bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
        head_dim=get("head_dim", default=0),
    )


def count_params(s: Shape) -> tuple[int, int]:
    """(all parameters, those in the layers' linear projections)."""
    linear = s.layers * sum(a * b for a, b in s.projection_dims().values())
    norms = s.layers * 2 * s.hidden + s.hidden
    embed = s.vocab * s.hidden * (1 if s.tied else 2)
    return linear + norms + embed, linear


def lora_params(s: Shape, r: int, target_modules: list[str]) -> int:
    dims = s.projection_dims()
    names = list(dims) if "all-linear" in target_modules else [m for m in target_modules if m in dims]
    return s.layers * sum(r * (dims[m][0] + dims[m][1]) for m in names)


@dataclass(frozen=True)
class MemoryNeed:
    params: int
    weights: float
    lora: float
    activations: float
    logits: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits + self.overhead

    def breakdown(self) -> str:
        parts = (
            ("weights", self.weights),
            ("LoRA + optimizer", self.lora),
            ("activations", self.activations),
            ("logits", self.logits),
            ("overhead", self.overhead),
        )
        return ", ".join(f"{name} {v / GIB:.1f}" for name, v in parts) + " GiB"


def estimate(
    config: dict[str, Any],
    *,
    device: str = "cpu",
    precision: str = "fp32",
    load_in_4bit: bool = False,
    lora_r: int = 16,
    target_modules: list[str] | None = None,
    batch_size: int = 2,
    seq_len: int = 512,
    gradient_checkpointing: bool = False,
) -> MemoryNeed:
    """Bytes a LoRA run needs, roughly. `device` "cpu" | "cuda"; `precision` "fp32" | "bf16" | "fp16".

    On a CPU bf16 is autocast over fp32 weights, so the weights stay 4 bytes; on a GPU 16-bit
    precisions load 2-byte weights; 4-bit is ~0.56 bytes per projection weight (NF4 plus its
    scales) with the embeddings kept in 16-bit.
    """
    s = shape_of(config)
    params, linear = count_params(s)
    half = precision in ("bf16", "fp16")
    if load_in_4bit:
        weights = linear * 0.5625 + (params - linear) * 2
    else:
        weights = params * (2 if half and device == "cuda" else 4)
    lora = lora_params(s, lora_r, target_modules or list(PROJECTIONS)) * 16  # fp32 param + grad + 2 Adam states
    tokens = batch_size * seq_len
    per_layer = tokens * s.hidden * ACT_BYTES_16 * (1 if half else 2)
    if gradient_checkpointing:  # each layer's input kept (16-bit or 32-bit), one layer recomputed at a time
        activations = s.layers * tokens * s.hidden * (2 if half else 4) + per_layer
    else:
        activations = s.layers * per_layer
    logits = tokens * s.vocab * 4 * 2  # fp32 logits and their gradient
    return MemoryNeed(params, float(weights), float(lora), float(activations), float(logits), OVERHEAD.get(device, GIB))


def advice(
    need: MemoryNeed,
    total: float,
    free: float | None,
    where: str,
    *,
    load_in_4bit: bool,
    batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool,
    can_4bit: bool,
) -> tuple[str, str] | None:
    """(level, one sentence) when the run will not fit ("error": over the device's total) or may
    not ("warning": over what is free now); None when it fits. The sentence says what to change."""
    if need.total <= (free if free is not None else total):
        return None
    fixes = []
    if not load_in_4bit and can_4bit:
        fixes.append("training.load_in_4bit = true")
    if batch_size > 1:
        fixes.append(f"a smaller training.batch_size (now {batch_size}; raise grad_accum to keep the effective batch)")
    if seq_len > 256:
        fixes.append(f"a shorter training.max_seq_length (now {seq_len})")
    if not gradient_checkpointing:
        fixes.append("training.gradient_checkpointing = true")
    fix = "; try " + ", ".join(fixes) if fixes else "; pick a smaller base model"
    if need.total > total:
        return (
            "error",
            f"this run needs about {need.total / GIB:.1f} GiB ({need.breakdown()}) but {where} has "
            f"{total / GIB:.1f} GiB{fix}.",
        )
    return (
        "warning",
        f"this run needs about {need.total / GIB:.1f} GiB but only {(free or 0) / GIB:.1f} of "
        f"{total / GIB:.1f} GiB of {where} is free now{fix}.",
    )


def device_memory(device: str) -> tuple[float, float | None, str]:
    """(total bytes, free bytes or None, a name) of the CPU's RAM or the first GPU."""
    if device == "cuda" and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.total,memory.free,name", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            total, free, name = [x.strip() for x in out.stdout.splitlines()[0].split(",", 2)]
            return float(total) * 2**20, float(free) * 2**20, f"the GPU ({name})"
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    import psutil

    vm = psutil.virtual_memory()
    return float(vm.total), float(vm.available), "this machine's RAM"


def model_config(base_model: str) -> dict[str, Any] | None:
    """The base model's config.json when it can be read without loading the model (an HF folder, a
    Hub snapshot, or a GGUF's cached HF folder); None otherwise."""
    from engines.base import EngineError
    from engines.models import model_cache_dir, resolve_model

    try:
        m = resolve_model(base_model)
    except EngineError:
        return None
    folder = m.path if m.kind == "hf" else model_cache_dir(m) / "hf"
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_run(run: RunSpec) -> tuple[str, str] | None:
    """`advice` for a sessions.model.RunSpec on this machine (None when it fits or cannot be told)."""
    from sessions.run_spec import wants_4bit
    from trainers.train.hardware import cuda_count, gpu_driver_present

    if run.backend == "openai":
        return None
    config = model_config(run.base_model)
    if config is None:
        return None
    device = "cuda" if gpu_driver_present() and cuda_count() > 0 else "cpu"
    t = run.training
    precision = t.precision if t.precision in ("fp32", "bf16", "fp16") else ("bf16" if device == "cuda" else "fp32")
    four = wants_4bit(run)
    batch = t.batch_size
    if batch == "auto":  # the micro-batch this machine would run (trainers.train.hardware)
        from trainers.train.hardware import resolve_for

        batch = resolve_for(run, others=0.0).batch_size
    elif not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        return None  # validation names the bad value
    try:
        need = estimate(
            config,
            device=device,
            precision=precision,
            load_in_4bit=four,
            lora_r=run.lora.r,
            target_modules=list(run.lora.target_modules),
            batch_size=batch,
            seq_len=t.max_seq_length,
            gradient_checkpointing=t.gradient_checkpointing,
        )
    except ConfigError:
        return None
    total, free, where = device_memory(device)
    return advice(
        need,
        total,
        free,
        where,
        load_in_4bit=four,
        batch_size=batch,
        seq_len=t.max_seq_length,
        gradient_checkpointing=t.gradient_checkpointing,
        can_4bit=device == "cuda",
    )


def config_from_file(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
