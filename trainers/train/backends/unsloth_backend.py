"""The `unsloth` backend: the run's model through unsloth's FastLanguageModel, trained by TRL.

GPU only (unsloth's kernels are Triton/CUDA): `check` refuses a machine without one at
validation, before anything starts. What differs from `hf` is only how the model is made:

    model, tokenizer = FastLanguageModel.from_pretrained(model_name=..., max_seq_length=...,
                                                         dtype=None, load_in_4bit=...)  # 4-bit unless set false
    model = FastLanguageModel.get_peft_model(model, r=..., target_modules=[...], lora_alpha=...,
                                             lora_dropout=..., bias="none",
                                             use_gradient_checkpointing="unsloth",
                                             random_state=seed, use_rslora=...)

(signatures as in unsloth's `unsloth/models/loader.py` and `unsloth/models/llama.py`); the
trainer (TRL `SFTTrainer`/`DPOTrainer`, given the PEFT model and no peft_config), events,
cancel, checkpoints and the final adapter are `hf`'s parts, composed. unsloth must be imported
before transformers/trl/peft so its patches apply, so it is the first import of `setup`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sessions.model import RunSpec
from sessions.run_spec import ALL_PROJECTIONS, wants_4bit
from trainers.train.backends import RunError, TrainContext, TrainOutcome
from trainers.train.hardware import machine_problems


def check(run: RunSpec) -> list[str]:
    t = run.training
    return machine_problems("unsloth", t.precision, t.optimizer, t.load_in_4bit)


def model_name_for(base_model: str) -> str:
    """A local HF folder for bundled/GGUF/cached models; a Hub repo id passes through (unsloth downloads it)."""
    from engines.base import EngineError
    from engines.models import hf_model_dir

    try:
        return str(hf_model_dir(base_model))
    except EngineError:
        if "/" in base_model and not Path(base_model).exists():
            return base_model  # e.g. "unsloth/Llama-3.2-1B-Instruct-bnb-4bit"
        raise


class Backend:
    """unsloth's FastLanguageModel + TRL, on one NVIDIA GPU."""

    name = "unsloth"

    def __init__(self) -> None:
        self.driver: Any = None

    def setup(self, ctx: TrainContext) -> None:
        try:
            import unsloth  # first, so it patches transformers/trl/peft
            from unsloth import FastLanguageModel
        except ImportError as e:
            raise RunError(f"backend unsloth cannot be imported ({e}); install unsloth on a CUDA machine.") from None
        if ctx.run.method == "dpo" and hasattr(unsloth, "PatchDPOTrainer"):
            unsloth.PatchDPOTrainer()  # unsloth's DPO recipe patches TRL's DPOTrainer before it is built
        from engines.base import EngineError
        from trainers.train.backends import hf
        from trainers.train.hardware import resolve_for

        run, t = ctx.run, ctx.run.training
        device = resolve_for(run, wants_4bit(run), resume_from=ctx.resume_from)
        if device.kind != "cuda":
            raise RunError('backend is unsloth, which needs an NVIDIA GPU with CUDA; use backend = "hf" here.')
        try:
            name = model_name_for(run.base_model)
        except EngineError as e:
            raise RunError(f"run {run.id!r}: base_model {run.base_model!r} cannot be used: {e}") from None
        hf.check_seq_length(run, hf.model_context_length(run.base_model) if name != run.base_model else None)
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=name,
            max_seq_length=t.max_seq_length,
            dtype=None,  # unsloth picks bf16 where the GPU has it, else fp16
            load_in_4bit=wants_4bit(run),  # unset: unsloth's 4-bit base (QLoRA)
        )
        targets = list(run.lora.target_modules)
        if targets == ["all-linear"]:
            targets = list(ALL_PROJECTIONS)
        model = FastLanguageModel.get_peft_model(
            model,
            r=run.lora.r,
            target_modules=targets,
            lora_alpha=run.lora.alpha,
            lora_dropout=run.lora.dropout,
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=t.seed,
            use_rslora=run.lora.use_rslora,
            loftq_config=None,
        )
        data = hf.prepare_data(ctx, tokenizer)
        ctx.job.log(f"unsloth: {run.base_model} on {device.count} GPU(s), {device.precision}, {device.optimizer}")
        # peft_config=None: the model already carries its LoRA adapters.
        self.driver = hf.driver_for(ctx, model, tokenizer, None, device, data)

    def train(self) -> TrainOutcome:
        assert self.driver is not None, "setup() first"
        return self.driver.train()

    def save_checkpoint(self) -> Path | None:
        return self.driver.save_checkpoint() if self.driver else None

    def cleanup(self) -> None:
        if self.driver:
            self.driver.cleanup()
        self.driver = None
