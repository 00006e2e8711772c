"""The settings of a training run, typed and documented, and their validation.

A run spec (`sessions.model.RunSpec`) names a base model, datasets, a method and a backend; the
knobs live here split by topic, the way TRL pairs `SFTConfig` with its trainer: `LoraSettings`
(the adapter) and `TrainingSettings` (the loop). Every field carries `metadata={"help": ...}`,
which the Train pane and `--help` texts show, so the documentation lives in one place.

`validate_run(run, session)` checks what can be checked without a machine (values, dataset ids,
method vs dataset format); backends add what depends on the machine (a GPU for unsloth, CUDA for
8-bit Adam) in `trainers.train.backends.validate`. Both return problem sentences that name the field.
Stdlib only: the TUI validates as you type without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model.py imports this module; the names below are only for annotations
    from sessions.model import RunSpec, Session

# The projections of a Llama-style block; LoRA on all seven is the usual recipe (QLoRA, unsloth).
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

METHODS = ("sft", "dpo")
BACKENDS = ("hf", "unsloth", "openai")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("auto", "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)

# The record shape each dataset format writes (see trainers.data.formats); what a method can train on.
FORMAT_SHAPES = {
    "chat_demos": "messages",
    "first_person": "text",
    "synthetic_docs": "text",
    "persona_chat": "conversational_prompt_completion",
    "tailoring_sft": "prompt_completion",
    "tailoring_dpo": "preference",
}
# The OpenAI fine-tuning API takes chats only (and preference pairs for its DPO method).
OPENAI_SFT_FORMATS = ("chat_demos", "persona_chat", "tailoring_sft")
# Where the trainer also logs its metrics (transformers' `report_to`), beside the job's events.jsonl.
REPORTERS = ("none", "tensorboard", "wandb", "tensorboard+wandb")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class LoraSettings:
    """The LoRA adapter: which layers get one and how big it is."""

    r: int = field(default=16, metadata=_help("Rank of the LoRA update matrices; larger learns more and costs more."))
    alpha: int = field(
        default=16,
        metadata=_help("LoRA scaling numerator: the update is scaled by alpha/r (alpha/sqrt(r) with rsLoRA)."),
    )
    dropout: float = field(
        default=0.0, metadata=_help("Dropout on the LoRA input, in [0, 1); 0 is fastest and usual for short runs.")
    )
    target_modules: list[str] = field(
        default_factory=lambda: list(ALL_PROJECTIONS),
        metadata=_help(
            "Module names that get an adapter: the attention (q,k,v,o) and MLP (gate,up,down) projections by "
            'default, or ["all-linear"].'
        ),
    )
    use_rslora: bool = field(
        default=False,
        metadata=_help("Rank-stabilised LoRA: scale by alpha/sqrt(r), which keeps large ranks from under-training."),
    )


@dataclass
class TrainingSettings:
    """The training loop. Defaults follow the common unsloth/TRL LoRA recipe."""

    learning_rate: float = field(default=2e-4, metadata=_help("Peak learning rate of the optimizer."))
    lr_scheduler: str = field(
        default="linear", metadata=_help("Learning-rate schedule after warm-up: " + ", ".join(SCHEDULERS) + ".")
    )
    warmup_steps: int = field(default=5, metadata=_help("Optimizer steps of linear warm-up from 0 to the peak rate."))
    num_epochs: int = field(default=1, metadata=_help("Passes over the training data (used when max_steps is 0)."))
    max_steps: int = field(default=0, metadata=_help("Optimizer steps to train; 0 trains for num_epochs instead."))
    batch_size: int | str = field(
        default="auto",
        metadata=_help(
            "Examples per forward pass (per device), or auto: keep the effective batch of 2 x grad_accum and split "
            "it as this machine runs fastest (on a CPU up to 8 a pass, bf16 where the CPU has it; on a GPU as many "
            "as fit), lowering grad_accum to match. The job's log and manifest say what it chose."
        ),
    )
    grad_accum: int = field(
        default=4,
        metadata=_help(
            "Forward passes accumulated per optimizer step; effective batch = batch_size x grad_accum "
            "(2 x grad_accum when batch_size is auto)."
        ),
    )
    max_seq_length: int = field(
        default=512, metadata=_help("Tokens per example; longer examples are cut (at most the model's context).")
    )
    weight_decay: float = field(default=0.01, metadata=_help("Decoupled weight decay of AdamW."))
    optimizer: str = field(
        default="auto",
        metadata=_help(
            "Optimizer: auto = adamw_8bit on a CUDA GPU (bitsandbytes) and adamw_torch on a CPU; or one of "
            + ", ".join(OPTIMIZERS[1:])
            + "."
        ),
    )
    seed: int = field(default=3407, metadata=_help("Seed for the adapter's initialisation, shuffling and dropout."))
    logging_steps: int = field(default=1, metadata=_help("Write a loss event every this many optimizer steps."))
    report_to: str = field(
        default="none",
        metadata=_help(
            "Also log metrics to: none; tensorboard (event files in the job's tensorboard/ folder); wandb "
            "(Weights & Biases, when installed and logged in); tensorboard+wandb. hf and unsloth backends only."
        ),
    )
    eval_steps: int = field(
        default=20, metadata=_help("Evaluate on the held-out examples every this many steps; 0 = never.")
    )
    save_steps: int = field(
        default=20, metadata=_help("Save a checkpoint (to resume from) every this many optimizer steps.")
    )
    completion_only_loss: bool = field(
        default=True,
        metadata=_help(
            "Train only on the completion (the assistant's turns) where records are chats or prompt/completion "
            "pairs; plain text records always train on every token."
        ),
    )
    precision: str = field(
        default="auto",
        metadata=_help(
            "Number format: fp32; bf16 (mixed precision: autocast on a CPU, native on a GPU); fp16 (GPU only); "
            "auto = bf16 on a GPU that has it else fp16, and on a CPU whatever bench/train.py measured faster "
            "at equal loss."
        ),
    )
    load_in_4bit: bool | None = field(
        default=None,
        metadata=_help(
            "Load the base model in 4-bit (QLoRA, bitsandbytes): CUDA GPUs only. Unset = auto: 4-bit with "
            "the unsloth backend (its 4-bit base), full precision with hf."
        ),
    )
    packing: bool = field(
        default=False,
        metadata=_help("Pack several short examples into one max_seq_length row (padding-free), fewer wasted tokens."),
    )
    padding_free: bool | None = field(
        default=None,
        metadata=_help(
            "Pack each micro-batch's examples into rows as wide as its longest instead of padding each to the "
            "longest: the same loss, without computing most of the padding. Unset = auto: on a CPU yes (about 1.45x "
            "a step on the demo's data), on a GPU no (not measured there). SFT on the hf backend; packing is "
            "padding-free already."
        ),
    )
    num_threads: int = field(
        default=0,
        metadata=_help(
            "CPU threads for torch; 0 = one per physical core that other processes leave idle (their CPU use, "
            "never this run's own), re-checked every 10 steps."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=_help("Recompute activations in the backward pass: less memory, ~20-30% slower (big models on GPUs)."),
    )
    save_total_limit: int = field(
        default=2, metadata=_help("Checkpoints kept on disk (the newest); 0 keeps all of them.")
    )
    dpo_beta: float = field(
        default=0.1, metadata=_help("DPO only: how far the policy may move from the reference (higher = closer).")
    )
    accelerate_config: str = field(
        default="",
        metadata=_help(
            "Path of an `accelerate config` YAML for multi-GPU, multi-node, DeepSpeed or FSDP runs; empty = every "
            "visible GPU of this machine. Used only when more than one GPU is visible."
        ),
    )
    processes: int = field(
        default=0,
        metadata=_help(
            "Processes for `accelerate launch`: 0 = one per visible GPU when there are two or more, else one plain "
            "process; 2 or more = that many (on a machine without a GPU: CPU processes over gloo, which exercises "
            "the distributed path but is no faster). hf backend only."
        ),
    )
    devices: str = field(
        default="",
        metadata=_help(
            'GPUs this run may use, as CUDA_VISIBLE_DEVICES takes them ("0", "1,3"); empty = all. On a shared box '
            "the job waits in the queue while one of them has too little free memory."
        ),
    )


@dataclass
class OpenAISettings:
    """The `openai` backend's endpoint, kept in the run's `[runs.openai]` table (RunSpec.extra).

    The key itself never enters the session: `api_key_env` names the variable that holds it.
    """

    base_url: str = field(
        default="https://api.openai.com/v1", metadata=_help("The fine-tuning API's base URL (ends in /v1).")
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata=_help("Name of the environment variable that holds the API key.")
    )
    suffix: str = field(default="", metadata=_help("Up to 64 characters added to the fine-tuned model's name."))
    n_epochs: int = field(default=0, metadata=_help("Epochs at OpenAI; 0 lets the service choose."))
    poll_seconds: float = field(default=10.0, metadata=_help("Seconds between polls of the remote job's status."))


def openai_settings(run: RunSpec) -> OpenAISettings:
    """The run's `[runs.openai]` table as settings (unknown keys are ignored, bad types reported by validate)."""
    raw = run.extra.get("openai", {}) if isinstance(run.extra, dict) else {}
    raw = raw if isinstance(raw, dict) else {}
    names = {f.name for f in dataclasses.fields(OpenAISettings)}
    return OpenAISettings(**{k: v for k, v in raw.items() if k in names})


def help_text(settings_cls: type, name: str) -> str:
    """The documented meaning of one settings field (for forms and CLI help)."""
    for f in dataclasses.fields(settings_cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def default_of(settings_cls: type, name: str) -> Any:
    for f in dataclasses.fields(settings_cls):
        if f.name == name:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    raise KeyError(name)


# ----------------------------------------------------------------------------- dict round trip


def wants_4bit(run: RunSpec) -> bool:
    """`training.load_in_4bit` resolved: unset means 4-bit for unsloth, full precision otherwise."""
    value = run.training.load_in_4bit
    return bool(value) if value is not None else run.backend == "unsloth"


def wants_padding_free(run: RunSpec, device_kind: str) -> bool:
    """`training.padding_free` resolved: unset means yes on a CPU, where it was measured, and no on
    a GPU; never for DPO, the other backends or a packed run (packing does its own)."""
    if run.method != "sft" or run.backend != "hf" or run.training.packing:
        return False
    value = run.training.padding_free
    return bool(value) if value is not None else device_kind == "cpu"


def run_to_dict(run: RunSpec) -> dict[str, Any]:
    """A plain dict of the run (nested settings as tables): what a job's spec.toml freezes."""
    return dataclasses.asdict(run)


def run_from_dict(data: dict[str, Any]) -> RunSpec:
    """Inverse of `run_to_dict`; unknown keys land in `extra` as the session store does."""
    from sessions.model import RunSpec

    data = dict(data)
    nested = {"lora": LoraSettings, "training": TrainingSettings}
    kwargs: dict[str, Any] = {}
    extra = dict(data.pop("extra", {}) or {})
    names = {f.name for f in dataclasses.fields(RunSpec)}
    for key, value in data.items():
        if key in nested and isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(nested[key])}
            sub = nested[key](**{k: v for k, v in value.items() if k in known})
            kwargs[key] = sub
        elif key in names:
            kwargs[key] = value
        else:
            extra[key] = value
    return RunSpec(extra=extra, **kwargs)


# ----------------------------------------------------------------------------- validation


# `batch_size = "auto"` keeps the effective batch the fixed default had (micro-batch 2), so a
# session that set only grad_accum trains on the same examples per step as before `auto` came.
AUTO_BASE_MICRO_BATCH = 2


def effective_batch_of(batch_size: int | str, grad_accum: int) -> int:
    """Examples per optimizer step (per device): batch_size x grad_accum, auto counting as 2."""
    micro = AUTO_BASE_MICRO_BATCH if batch_size == "auto" else int(batch_size)
    return micro * int(grad_accum)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_settings(prefix: str, obj: Any, rules: dict[str, tuple[str, Any]]) -> list[str]:
    """rules: field -> (kind, constraint) with kind int|int_or_auto|num|bool|str|choice and constraint (lo, hi) or choices."""
    problems = []
    for name, (kind, constraint) in rules.items():
        value = getattr(obj, name, None)
        where = f"{prefix}.{name}"
        default = default_of(type(obj), name)
        if kind == "optbool":
            if value is not None and not isinstance(value, bool):
                problems.append(f"{where} is {value!r}; it must be true or false, or left out for auto.")
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                problems.append(f"{where} is {value!r}; it must be true or false (default {str(default).lower()}).")
            continue
        if kind == "int_or_auto":
            lo, hi = constraint
            if value != "auto" and (not _is_int(value) or value < lo or value > hi):
                problems.append(
                    f'{where} is {value!r}; it must be "auto" or a whole number from {lo} to {hi} '
                    f"(default {default!r})."
                )
            continue
        if kind == "choice":
            if value not in constraint:
                problems.append(f"{where} is {value!r}; choose one of {', '.join(constraint)} (default {default!r}).")
            continue
        if kind == "str":
            if not isinstance(value, str):
                problems.append(f"{where} is {value!r}; it must be text (default {default!r}).")
            continue
        ok_type = _is_int(value) if kind == "int" else _is_num(value)
        lo, hi = constraint
        what = "a whole number" if kind == "int" else "a number"
        bounds = (
            f"from {lo} to {hi}"
            if hi is not None and lo is not None
            else f"of at least {lo}"
            if lo is not None
            else f"of at most {hi}"
        )
        if not ok_type or (lo is not None and value < lo) or (hi is not None and value > hi):
            problems.append(f"{where} is {value!r}; it must be {what} {bounds} (default {default!r}).")
    return problems


_LORA_RULES: dict[str, tuple[str, Any]] = {
    "r": ("int", (1, 1024)),
    "alpha": ("num", (1e-6, 1e6)),
    "dropout": ("num", (0, 0.99)),
    "use_rslora": ("bool", None),
}

_TRAINING_RULES: dict[str, tuple[str, Any]] = {
    "learning_rate": ("num", (1e-9, 1.0)),
    "lr_scheduler": ("choice", SCHEDULERS),
    "warmup_steps": ("int", (0, None)),
    "num_epochs": ("int", (1, 10_000)),
    "max_steps": ("int", (0, None)),
    "batch_size": ("int_or_auto", (1, 4096)),
    "grad_accum": ("int", (1, 4096)),
    "max_seq_length": ("int", (16, 1 << 20)),
    "weight_decay": ("num", (0, 10)),
    "optimizer": ("choice", OPTIMIZERS),
    "seed": ("int", (0, 2**32 - 1)),
    "logging_steps": ("int", (1, None)),
    "report_to": ("choice", REPORTERS),
    "eval_steps": ("int", (0, None)),
    "save_steps": ("int", (1, None)),
    "completion_only_loss": ("bool", None),
    "precision": ("choice", PRECISIONS),
    "load_in_4bit": ("optbool", None),
    "packing": ("bool", None),
    "padding_free": ("optbool", None),
    "num_threads": ("int", (0, 1024)),
    "gradient_checkpointing": ("bool", None),
    "save_total_limit": ("int", (0, None)),
    "dpo_beta": ("num", (1e-6, 100)),
    "accelerate_config": ("str", None),
    "processes": ("int", (0, 1024)),
    "devices": ("str", None),
}

_OPENAI_RULES: dict[str, tuple[str, Any]] = {
    "base_url": ("str", None),
    "api_key_env": ("str", None),
    "suffix": ("str", None),
    "n_epochs": ("int", (0, 50)),
    "poll_seconds": ("num", (0.01, 3600)),
}


def _devices_ok(devices: str) -> bool:
    parts = [p.strip() for p in devices.split(",")]
    return all(p.isdigit() for p in parts) and len(set(parts)) == len(parts)


def device_list(devices: str) -> list[int]:
    """`training.devices` as GPU indices ([] = every visible GPU)."""
    return [int(p) for p in devices.split(",") if p.strip().isdigit()] if isinstance(devices, str) else []


def validate_run(run: RunSpec, session: Session) -> list[str]:
    """Every problem of `run` that needs no machine to see, one sentence each naming the field.

    An empty list means the run may start as far as the session can tell; the backend then checks
    the machine (`trainers.train.backends.validate`).
    """
    from sessions.workspace import id_problem

    name = f"run {run.id!r}" if isinstance(run.id, str) and run.id else "a run"
    problems: list[str] = []

    def add(field_name: str, text: str) -> None:
        problems.append(f"{name}: {field_name} {text}")

    bad_id = id_problem(run.id)
    if bad_id:
        add("id", f"{bad_id}; use letters, digits, '-', '_' and '.'.")
    if not isinstance(run.base_model, str) or not run.base_model.strip():
        add("base_model", 'is empty; name a model such as "bundled:smollm2-135m-instruct".')
    if run.method not in METHODS:
        add("method", f"is {run.method!r}; choose sft or dpo.")
    if run.backend not in BACKENDS:
        add("backend", f"is {run.backend!r}; choose one of {', '.join(BACKENDS)}.")

    datasets = run.datasets if isinstance(run.datasets, list) else []
    if not isinstance(run.datasets, list) or not datasets:
        add("datasets", "is empty; list at least one dataset id of this session.")
    formats: list[str] = []
    for ds_id in datasets:
        spec = session.dataset(ds_id) if isinstance(ds_id, str) else None
        if spec is None:
            known = ", ".join(d.id for d in session.datasets) or "none yet"
            add("datasets", f"names {ds_id!r}, which is not a dataset of this session (known: {known}).")
            continue
        formats.append(spec.format)
        if spec.format not in FORMAT_SHAPES:
            add("datasets", f"names {ds_id!r}, whose format {spec.format!r} cannot be trained on.")
    if run.method == "dpo":
        wrong = [f for f in formats if f != "tailoring_dpo"]
        if wrong:
            add(
                "method",
                f"is dpo, which needs preference pairs (tailoring_dpo datasets), but the datasets are {', '.join(wrong)}.",
            )
    elif run.method == "sft" and "tailoring_dpo" in formats:
        add("method", 'is sft, but a tailoring_dpo dataset holds preference pairs; use method = "dpo" for it.')
    if run.backend == "openai":
        allowed = ("tailoring_dpo",) if run.method == "dpo" else OPENAI_SFT_FORMATS
        wrong = [f for f in formats if f not in allowed]
        if wrong and run.method == "sft":
            add(
                "backend",
                f"is openai, which fine-tunes on chats only; {', '.join(sorted(set(wrong)))} records are plain text.",
            )
        raw = run.extra.get("openai", {}) if isinstance(run.extra, dict) else {}
        if not isinstance(raw, dict):
            add("openai", "must be a table ([runs.openai]) with base_url and api_key_env.")
        else:
            names = {f.name for f in dataclasses.fields(OpenAISettings)}
            for key in raw:
                if key not in names:
                    add(f"openai.{key}", f"is not a setting; known: {', '.join(sorted(names))}.")
            settings = openai_settings(run)
            problems.extend(f"{name}: {p}" for p in _check_settings("openai", settings, _OPENAI_RULES))
            if isinstance(settings.base_url, str) and not settings.base_url.startswith(("http://", "https://")):
                add("openai.base_url", f"is {settings.base_url!r}; it must start with http:// or https://.")
            if isinstance(settings.api_key_env, str) and not settings.api_key_env.replace("_", "").isalnum():
                add(
                    "openai.api_key_env",
                    "must be the *name* of an environment variable (letters, digits, _), never the key.",
                )

    lora = getattr(run, "lora", None)
    if not isinstance(lora, LoraSettings):
        add("lora", "must be a table of LoRA settings.")
    else:
        problems.extend(f"{name}: {p}" for p in _check_settings("lora", lora, _LORA_RULES))
        mods = lora.target_modules
        if not isinstance(mods, list) or not mods or not all(isinstance(m, str) and m for m in mods):
            add(
                "lora.target_modules",
                f'is {mods!r}; list module names such as {list(ALL_PROJECTIONS[:2])} or ["all-linear"].',
            )
    training = getattr(run, "training", None)
    if not isinstance(training, TrainingSettings):
        add("training", "must be a table of training settings.")
    else:
        problems.extend(f"{name}: {p}" for p in _check_settings("training", training, _TRAINING_RULES))
        if run.backend != "openai" and _is_int(training.warmup_steps) and _is_int(training.max_steps):
            if training.max_steps and training.warmup_steps > training.max_steps:
                add(
                    "training.warmup_steps",
                    f"is {training.warmup_steps}, more than max_steps ({training.max_steps}); lower it.",
                )
        if isinstance(training.devices, str) and training.devices.strip() and not _devices_ok(training.devices):
            add(
                "training.devices",
                f'is {training.devices!r}; list GPU indices separated by commas, such as "0" or "1,3".',
            )
        if _is_int(training.processes) and training.processes > 1 and run.backend != "hf":
            add(
                "training.processes",
                f"is {training.processes}, but only the hf backend runs through accelerate launch; set it to 0.",
            )
        if training.load_in_4bit is True and run.backend == "openai":
            add("training.load_in_4bit", "has no meaning for the openai backend; set it to false.")
        if training.padding_free is True and (run.backend != "hf" or run.method != "sft"):
            add(
                "training.padding_free",
                f"applies to SFT on the hf backend only (this run is {run.method} on {run.backend}); unset it.",
            )
    return problems
