"""The `hf` backend: transformers + peft + TRL (`SFTTrainer`, `DPOTrainer`) on a CPU or CUDA GPUs.

Parts, composed rather than inherited (the unsloth backend reuses them with its own model):
- `load_base_model`: the base through `engines.models` (a bundled GGUF becomes a cached HF
  folder), fp32 on a CPU, bf16/fp16 on a GPU, or 4-bit NF4 through bitsandbytes (QLoRA);
- `build_trainer`: the TRL trainer for the run's method, with the run's settings translated to
  `SFTConfig`/`DPOConfig`, and the job callback (events, cancel);
- `TrainerDriver`: train (resuming from a checkpoint), save a checkpoint, save the final adapter
  in the standard PEFT format, clean up.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sessions.model import RunSpec
from sessions.run_spec import LoraSettings, wants_4bit, wants_padding_free
from trainers.train.backends import RunError, TrainContext, TrainOutcome
from trainers.train.hardware import Device, machine_problems, resolve_for
from trainers.train.metrics import RunMetrics, make_callback
from trainers.train.reader import CHECKPOINT_PREFIX, checkpoint_complete, checkpoint_step, checkpoints
from trainers.train.run_data import PreparedData, prepare_dpo, prepare_sft

TENSORBOARD_DIR = "tensorboard"  # in the job folder: `tensorboard --logdir <workspace>/jobs`
# report_to target -> (module that must import, what to install)
REPORT_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def report_targets(report_to: str) -> list[str]:
    """`training.report_to` as transformers' list ("tensorboard+wandb" -> both; "none" -> [])."""
    return [] if report_to in ("", "none") else [x for x in report_to.split("+") if x]


def report_problems(run: RunSpec) -> list[str]:
    """A reporter whose package is missing, said before the run starts rather than deep in it."""
    import importlib.util

    problems = []
    for target in report_targets(run.training.report_to):
        module, package = REPORT_PACKAGES.get(target, (target, target))
        if importlib.util.find_spec(module) is None:
            problems.append(
                f"training.report_to is {run.training.report_to!r}, but the {package} package is not "
                f'installed; install it (pip install {package}) or set report_to = "none".'
            )
    return problems


def check(run: RunSpec) -> list[str]:
    t = run.training
    return machine_problems("hf", t.precision, t.optimizer, t.load_in_4bit) + report_problems(run)


def _report_args(ctx: TrainContext) -> dict[str, Any]:
    """transformers' `report_to`; TensorBoard's event files go to the job's tensorboard/ folder
    (transformers 5 reads TENSORBOARD_LOGGING_DIR; older ones take `logging_dir`). W&B is passed
    through as is: it uses the user's own login and WANDB_* settings."""
    targets = report_targets(ctx.run.training.report_to)
    if not targets:
        return {"report_to": "none"}
    args: dict[str, Any] = {"report_to": targets}
    if "tensorboard" in targets:
        import inspect

        from transformers import TrainingArguments

        folder = str(ctx.job_dir / TENSORBOARD_DIR)
        os.environ["TENSORBOARD_LOGGING_DIR"] = folder  # this process is the job's own worker
        if "logging_dir" in inspect.signature(TrainingArguments.__init__).parameters:
            args["logging_dir"] = folder
    if "wandb" in targets:
        os.environ.setdefault("WANDB_NAME", ctx.job_dir.name)
    return args


# ----------------------------------------------------------------------------- checkpoints


def drop_incomplete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Remove checkpoints a crash or a full disk cut short (they would confuse rotation and resume)."""
    removed = []
    for _, p, ok in checkpoints(checkpoints_dir):
        if not ok:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- model


def model_context_length(base_model: str) -> int | None:
    """The longest sequence the base model takes (its config's max_position_embeddings)."""
    from engines.models import hf_model_dir

    folder = hf_model_dir(base_model)  # an unknown model raises EngineError here
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    text = config.get("text_config", config)
    value = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def check_seq_length(run: RunSpec, limit: int | None) -> None:
    if limit and run.training.max_seq_length > limit:
        raise RunError(
            f"run {run.id!r}: training.max_seq_length is {run.training.max_seq_length}, but {run.base_model} "
            f"takes at most {limit} tokens; lower it to {limit} or less."
        )


def lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    modules: Any = list(lora.target_modules)
    if modules == ["all-linear"]:
        modules = "all-linear"
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=modules,
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_base_model(run: RunSpec, device: Device) -> Any:
    """The base model in the number format the device trains in (4-bit NF4 where asked, on CUDA)."""
    from engines.base import EngineError
    from engines.models import hf_model_dir, load_hf_model

    try:
        if device.kind == "cuda" and wants_4bit(run):
            import torch
            from transformers import AutoModelForCausalLM, BitsAndBytesConfig

            compute = torch.bfloat16 if device.precision == "bf16" else torch.float16
            quant = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            model = AutoModelForCausalLM.from_pretrained(
                str(hf_model_dir(run.base_model)),
                quantization_config=quant,
                dtype=compute,
                device_map={"": local_rank},
            )
            from peft import prepare_model_for_kbit_training

            return prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=run.training.gradient_checkpointing
            )
        dtype = "float32"
        if device.kind == "cuda":
            dtype = "bfloat16" if device.precision == "bf16" else "float16" if device.precision == "fp16" else "float32"
        return load_hf_model(run.base_model, dtype=dtype)
    except EngineError as e:
        raise RunError(f"run {run.id!r}: base_model {run.base_model!r} cannot be loaded: {e}") from None


# ----------------------------------------------------------------------------- trainer


def _checkpointing_arg() -> str:
    """transformers 5.2x renamed `gradient_checkpointing` to `activation_checkpointing` (the old
    name warns on every run, into the log the Train pane shows); older ones know only the old."""
    import inspect

    from transformers import TrainingArguments

    names = inspect.signature(TrainingArguments.__init__).parameters
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _common_args(ctx: TrainContext, device: Device, has_eval: bool) -> dict[str, Any]:
    t = ctx.run.training
    eval_on = has_eval and t.eval_steps > 0
    return dict(
        output_dir=str(ctx.checkpoints_dir),
        per_device_train_batch_size=device.batch_size,  # resolved: "auto" is split by trainers.train.hardware
        per_device_eval_batch_size=device.batch_size,
        gradient_accumulation_steps=device.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        weight_decay=t.weight_decay,
        optim=device.optimizer,
        seed=t.seed,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        eval_strategy="steps" if eval_on else "no",
        eval_steps=t.eval_steps if eval_on else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit or None,
        bf16=device.precision == "bf16",
        fp16=device.precision == "fp16",
        use_cpu=device.kind == "cpu",
        **{_checkpointing_arg(): t.gradient_checkpointing},
        **_report_args(ctx),
        disable_tqdm=True,
        dataloader_pin_memory=device.kind == "cuda",
        # Under `accelerate launch` (DDP): every LoRA weight takes part in each forward pass. transformers
        # would otherwise search for unused ones (the model is a PeftModel, not a PreTrainedModel): an
        # extra graph traversal per step, which DDP itself warns about in every rank's log.
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="non_padding",
        max_length=t.max_seq_length,
    )


def _dataset(records: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(records)


def build_trainer(
    ctx: TrainContext,
    model: Any,
    tokenizer: Any,
    peft_config: Any,
    device: Device,
    data: PreparedData,
    callbacks: list[Any],
) -> Any:
    """The TRL trainer for the run's method, configured from the run's settings."""
    t = ctx.run.training
    args = _common_args(ctx, device, bool(data.eval))
    train_ds = _dataset(data.train)
    eval_ds = _dataset(data.eval) if data.eval and args["eval_strategy"] != "no" else None
    if ctx.run.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        _torch_logprobs_without_triton()
        config = DPOConfig(**args, beta=t.dpo_beta)
        return _for_ranks(DPOTrainer, device)(
            model=model,
            args=config,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        **args,
        packing=t.packing,
        completion_only_loss=data.completion_only_loss,
        assistant_only_loss=data.assistant_only_loss,
    )
    cls = _plain_loss_sft(SFTTrainer) if device.kind == "cpu" else SFTTrainer
    extra: dict[str, Any] = {}
    if wants_padding_free(ctx.run, device.kind):
        extra["data_collator"] = padding_free_collator(tokenizer)
    return _for_ranks(cls, device)(
        model=model,
        args=config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        **extra,
    )


def padding_free_collator(tokenizer: Any) -> Any:
    """Micro-batches without padding (trainers.train.rows): each micro-batch's examples packed
    into rows as wide as its longest, position ids restarting at each example, no attention mask.
    The loss is the padded batch's without computing most of the padding: on the demo's mix 44% of
    a padded micro-batch of 8 was padding (docs/training.md, "Micro-batches without padding").
    The examples stay truncated to `max_seq_length` (TRL truncates them when it tokenizes).
    `training.padding_free`, unset, uses it on a CPU, where it was measured. The model must run
    without a KV cache, or transformers ignores the restarts (`model_inputs`)."""
    from trainers.train.rows import RowsCollator

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return RowsCollator(pad)


def _for_ranks(cls: type, device: Device) -> type:
    """The trainer class for CPU ranks under `accelerate launch` (training.processes >= 2 without a
    GPU): transformers resumes a distributed run's optimizer with `map_location=args.device`, which
    on CPU ranks is "cpu:N", a location torch.load cannot restore to ("don't know how to restore
    data location ... cpu:0"), so every resume of such a run failed. Load it to "cpu" instead."""
    if device.kind != "cpu" or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return cls

    class CpuRanksTrainer(cls):
        def _load_optimizer_and_scheduler(self, checkpoint):  # transformers' signature
            import warnings

            import torch
            from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME

            folder = Path(checkpoint) if checkpoint else None
            if folder is None or not (folder / OPTIMIZER_NAME).is_file() or not (folder / SCHEDULER_NAME).is_file():
                return super()._load_optimizer_and_scheduler(checkpoint)
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_NAME, map_location="cpu", weights_only=True))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's "save the optimizer too" reminder
                self.lr_scheduler.load_state_dict(torch.load(folder / SCHEDULER_NAME, weights_only=True))

    return CpuRanksTrainer


def _torch_logprobs_without_triton() -> None:
    """TRL 1.15 (the locked version) computes DPO's log-probabilities through a Triton kernel
    (`_ChunkedLogProbFunction`) and leaves it None where Triton is missing, as in torch's CPU
    build, so every DPO step on a CPU fails ("'NoneType' object has no attribute 'apply'").
    Put the same quantities, computed from the full logits, in its place; only where it is None,
    so a GPU keeps the kernel and a TRL that ships its own fallback (1.16) is left alone."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    if hasattr(trl_utils, "_ChunkedLogProbFunction") and trl_utils._ChunkedLogProbFunction is None:
        trl_utils._ChunkedLogProbFunction = _FullLogitsLogProb


class _FullLogitsLogProb:
    """`ChunkedLogProbFunction.apply`'s contract in plain torch autograd: per-token log-probs of
    `targets`, and, when asked in `outputs`, entropy, log sum p², mean logit and is-argmax. The
    logits are transformed as TRL's kernel does (scale, soft-cap, temperature)."""

    @staticmethod
    def apply(
        hidden,
        weight,
        bias,
        targets,
        temperature,
        chunk_size,
        final_logit_softcapping=None,  # noqa: ANN001, ANN205
        logit_scale=1.0,
        outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1"),
    ):
        import torch

        z = torch.nn.functional.linear(hidden, weight, bias).float() * logit_scale
        if final_logit_softcapping is not None:
            z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
        z = z / temperature
        logp = z.log_softmax(-1)
        logprobs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
        sq = torch.logsumexp(2 * logp, -1).detach() if "log_sum_sq_probs" in outputs else None
        mean = z.mean(-1).detach() if "mean_logits" in outputs else None
        top1 = (z.argmax(-1) == targets) if "is_top1" in outputs else None
        return logprobs, entropy, sq, mean, top1


def _plain_loss_sft(base: type) -> type:
    """TRL's SFTTrainer with transformers' own loss: the model's cross-entropy on the labels TRL
    already masked (-100 outside the completion). TRL computes the loss through a chunked "fused
    LM head" that never holds the full logits and also yields entropy and token-accuracy
    metrics: the right trade on a GPU with a big vocabulary, but on a CPU the chunking costs
    more than the logits it saves (bench/train.py: 0.83x a plain Trainer loop at equal settings).
    Same loss, same tokens; those two metrics, and TRL's own `num_tokens`, are not logged (tokens/s
    comes from the trainer state's `num_input_tokens_seen`, trainers/train/metrics.py).

    In training, the head's product and the softmax over the 49k-token vocabulary run only at the
    positions that hold a label (`labelled_positions_loss`), not at the prompt's or the padding's."""
    from transformers import Trainer

    class PlainLossSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            inputs = model_inputs(inputs)
            if return_outputs or "labels" not in inputs:  # evaluation's prediction step wants the logits
                return Trainer.compute_loss(
                    self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
            # as Trainer.compute_loss: the count reaches the loss only where the model takes it, and
            # scales it by the processes averaged over (a CPU has no tensor parallelism)
            items = num_items_in_batch if self.model_accepts_loss_kwargs else None
            loss = labelled_positions_loss(self.accelerator, model, inputs, items)
            if self.args.average_tokens_across_devices and items is not None:
                loss = loss * self.accelerator.num_processes
            return loss

        def _track_num_input_tokens(self, inputs):  # noqa: ANN001, ANN202 (transformers' hook)
            # A rows batch's padding is each row's leftover segment; transformers would count tokens
            # unequal to the pad token, and this tokenizer pads with its end-of-turn token, which examples hold.
            if _is_padding_free(inputs) and self.args.include_num_input_tokens_seen != "no":
                import torch

                from trainers.train.rows import real_tokens

                pad = getattr(self.data_collator, "pad_token_id", None)
                n = real_tokens(inputs, pad) if pad is not None else inputs["input_ids"].numel()
                seen = torch.as_tensor(n, device=self.args.device, dtype=torch.int64)
                self.state.num_input_tokens_seen += self.accelerator.gather(seen).sum().item()
                return
            super()._track_num_input_tokens(inputs)

    return PlainLossSFTTrainer


def labelled_positions_loss(accelerator: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """The causal-LM loss of `model(**inputs)` with its labels, as transformers computes it
    (`ForCausalLMLoss`: fp32 cross-entropy of each position against the next label, summed over
    `num_items_in_batch` or averaged), with the head applied only where the next label is not -100.
    The model runs as the trainer wrapped it (mixed precision, DDP) and returns its last hidden
    states (normed) with the logits of one position; the head then runs under the same autocast.
    Each row's gradient is the full computation's, bit for bit (tests/test_train_hf.py); the loss
    can differ in its last bit (another summation order). The demo's padded run took 416 s against
    543 s for its 80 steps, the same adapter byte for byte (docs/training.md, "Micro-batches without
    padding")."""
    import torch

    labels = inputs["labels"]
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**forward, output_hidden_states=True, logits_to_keep=1)
    target = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    keep = target != -100
    head = accelerator.unwrap_model(model).get_output_embeddings()
    with accelerator.autocast():
        logits = head(outputs.hidden_states[-1][keep])
    reduction = "sum" if num_items_in_batch is not None else "mean"
    loss = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction=reduction)
    if num_items_in_batch is not None:
        loss = loss / (
            num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        )
    return loss


def _is_padding_free(inputs: dict[str, Any]) -> bool:
    return "position_ids" in inputs and "attention_mask" not in inputs


def model_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A batch as the model takes it for the loss: without TRL's masks (the labels already hold
    them) and without a KV cache, as TRL's own `compute_loss` runs it. With a cache transformers
    does not read a padding-free or packed batch's position-id restarts as separate examples,
    and attention crosses from one example into the next (so, before this, a `packing = true`
    run on a CPU would have trained; reasoned from the same mechanism, not run)."""
    kept = {k: v for k, v in inputs.items() if k not in ("completion_mask", "assistant_masks")}
    return {**kept, "use_cache": False}


def prepare_data(ctx: TrainContext, tokenizer: Any) -> PreparedData:
    with_eval = ctx.run.training.eval_steps > 0
    if ctx.run.method == "dpo":
        data = prepare_dpo(ctx.datasets, with_eval=with_eval)
    else:
        data = prepare_sft(ctx.datasets, tokenizer, ctx.run.training.completion_only_loss, with_eval=with_eval)
    if not data.train:
        raise RunError(
            f"run {ctx.run.id!r} has no training examples after preparing its datasets; check them in the Data tab."
        )
    for note in data.notes:
        ctx.job.log(note)
    return data


def _quiet_libraries() -> None:
    """Progress bars of datasets/transformers would flood the job's log.txt."""
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()


class TrainerDriver:
    """Runs a built TRL trainer inside the job: resume, cancel, checkpoints, final adapter."""

    def __init__(self, ctx: TrainContext, trainer: Any, tokenizer: Any, metrics: RunMetrics, callback: Any) -> None:
        self.ctx = ctx
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.callback = callback

    def train(self) -> TrainOutcome:
        ctx = self.ctx
        resume = str(ctx.resume_from) if ctx.resume_from else None
        self.trainer.train(resume_from_checkpoint=resume)
        state = self.trainer.state
        step = state.global_step
        finished = not ctx.should_stop() or (state.max_steps and step >= state.max_steps)
        if not finished:
            path = self.save_checkpoint()
            summary = self.metrics.summary(step)
            if ctx.rank == 0:
                ctx.job.event(event="train_end", state="cancelled", checkpoint=str(path) if path else None, **summary)
            return TrainOutcome("cancelled", step, summary=summary)
        adapter = self.save_adapter()
        summary = self.metrics.summary(step)
        engine = {
            "id": f"run-{ctx.run.id}",
            "kind": "transformers",
            "model": ctx.run.base_model,
            "adapter": str(adapter),
        }
        if ctx.rank == 0:
            ctx.job.event(event="train_end", state="finished", adapter=str(adapter), **summary)
        return TrainOutcome("finished", step, adapter=str(adapter), engine=engine, summary=summary)

    def save_checkpoint(self) -> Path | None:
        """A checkpoint at the current step (the callback normally had the trainer save it already)."""
        step = self.trainer.state.global_step
        if step <= 0:
            return None
        path = self.ctx.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"
        if not checkpoint_complete(path):
            self.trainer._save_checkpoint(self.trainer.model, trial=None)  # the Trainer's own format, for resume
        return path

    def save_adapter(self) -> Path:
        """The final adapter in the standard PEFT format (adapter_config.json + safetensors) + tokenizer."""
        target = self.ctx.adapter_dir
        if self.ctx.rank != 0:
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.trainer.model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        (tmp / "RUN.json").write_text(
            json.dumps(
                {
                    "run": self.ctx.run.id,
                    "base_model": self.ctx.run.base_model,
                    "method": self.ctx.run.method,
                    "step": self.trainer.state.global_step,
                },
                indent=1,
            )
            + "\n"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        return target

    def cleanup(self) -> None:
        self.trainer = None
        gc.collect()
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def begin_event(
    ctx: TrainContext, device: Device, model: Any, data: PreparedData, extra: dict[str, Any] | None = None
) -> None:
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    resumed = int(ctx.resume_from.name[len(CHECKPOINT_PREFIX) :]) if ctx.resume_from else None
    ctx.job.event(
        event="train_begin",
        run=ctx.run.id,
        backend=ctx.run.backend,
        method=ctx.run.method,
        base_model=ctx.run.base_model,
        device=device.kind,
        gpus=device.count,
        precision=device.precision,
        optimizer=device.optimizer,
        threads=device.threads,
        examples=len(data.train),
        eval_examples=len(data.eval),
        shape=data.shape,
        completion_only_loss=data.completion_only_loss,
        assistant_only_loss=data.assistant_only_loss,
        padding_free=wants_padding_free(ctx.run, device.kind),
        trainable_params=trainable,
        total_params=total,
        resumed_from=resumed,
        batch_size=device.batch_size,
        grad_accum=device.grad_accum,
        auto=list(device.notes),
        **(extra or {}),
    )


def thread_governor(ctx: TrainContext, device: Device, every: int = 10) -> Any:
    """With num_threads = 0 on a CPU, re-pick torch's threads every few steps as other load comes
    and goes (a busy core stalls every OpenMP barrier; see trainers.train.hardware.auto_threads). Other
    load is what other processes used since the last check: never this run's own threads."""
    if device.kind != "cpu" or ctx.run.training.num_threads:
        return None
    import torch

    from trainers.train.hardware import OtherCpuUse, auto_threads

    meter = OtherCpuUse()

    def govern(step: int) -> None:
        if step % every:
            return
        others = meter.others()
        if others is None:
            return
        now = torch.get_num_threads()
        want = auto_threads(others)
        if want != now:
            torch.set_num_threads(want)
            ctx.job.log(
                f"step {step}: torch threads {now} -> {want} (other processes used {others:.1f} CPUs "
                f"over the last {every} steps)"
            )

    return govern


def driver_for(
    ctx: TrainContext, model: Any, tokenizer: Any, peft_config: Any, device: Device, data: PreparedData
) -> TrainerDriver:
    """Build the trainer with the job callback, announce the run, and wrap it in a driver."""
    start_step = checkpoint_step(ctx.resume_from) if ctx.resume_from else 0
    tokens_before = 0
    if ctx.resume_from:
        try:
            state = json.loads((ctx.resume_from / "trainer_state.json").read_text(encoding="utf-8"))
            tokens_before = int(state.get("num_input_tokens_seen") or 0)
        except (OSError, ValueError):
            pass
    metrics = RunMetrics(
        ctx.job,
        ctx.run.training.max_steps,
        start_step=start_step or 0,
        elapsed_before=ctx.elapsed_before,
        tokens_before=tokens_before,
    )
    callback = make_callback(metrics, ctx.should_stop, thread_governor(ctx, device))
    trainer = build_trainer(ctx, model, tokenizer, peft_config, device, data, [callback])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # its dict prints would flood log.txt; events carry the numbers
    if ctx.rank == 0:
        # world_size from the trainer itself: under `accelerate launch` it proves the ranks joined one group.
        begin_event(ctx, device, trainer.model, data, {"world_size": int(getattr(trainer.args, "world_size", 1) or 1)})
    return TrainerDriver(ctx, trainer, tokenizer, metrics, callback)


class Backend:
    """transformers + peft + TRL."""

    name = "hf"

    def __init__(self) -> None:
        self.driver: TrainerDriver | None = None

    def setup(self, ctx: TrainContext) -> None:
        import torch

        from engines.models import load_tokenizer

        _quiet_libraries()
        device = resolve_for(ctx.run, resume_from=ctx.resume_from)
        if device.kind == "cpu":
            torch.set_num_threads(device.threads)
        for note in device.notes:
            ctx.job.log(note)
        check_seq_length(ctx.run, model_context_length_safe(ctx.run))
        tokenizer = load_tokenizer(ctx.run.base_model)
        data = prepare_data(ctx, tokenizer)
        ctx.job.log(
            f"loading {ctx.run.base_model} for {ctx.run.method} on {device.kind} "
            f"({device.precision}, {device.optimizer}, {len(data.train)} examples)"
        )
        model = load_base_model(ctx.run, device)
        self.driver = driver_for(ctx, model, tokenizer, lora_config(ctx.run.lora), device, data)

    def train(self) -> TrainOutcome:
        assert self.driver is not None, "setup() first"
        return self.driver.train()

    def save_checkpoint(self) -> Path | None:
        return self.driver.save_checkpoint() if self.driver else None

    def cleanup(self) -> None:
        if self.driver:
            self.driver.cleanup()
        self.driver = None


def model_context_length_safe(run: RunSpec) -> int | None:
    """The base model's context length; an unknown model is a RunError naming base_model."""
    from engines.base import EngineError

    try:
        return model_context_length(run.base_model)
    except EngineError as e:
        raise RunError(f"run {run.id!r}: base_model {run.base_model!r} cannot be used: {e}") from None
