"""Check that a GGUF computes what the merged HF model computes, on the same tokens.

The usual way a fine-tune goes wrong in llama.cpp or Ollama is silent: the chat template, BOS or
EOS is lost, or a tensor is mangled, and the model still talks, only worse. So the check is
numerical, on the model's own chat template:

1. the same prompts are rendered with the run's chat template and tokenised by transformers and
   by llama.cpp; the ids must be equal (a template or BOS mismatch shows here, by position);
2. transformers continues each prompt greedily (the reference path); both models are then run
   teacher-forced over that path and their next-token distributions compared at every position:
   top-1 agreement and mean KL(hf || gguf) in nats;
3. llama.cpp generates greedily by itself, and its first tokens are compared with the reference.

Each GGUF type has its own bounds (`BOUNDS`): F16 must match closely; a quantisation may drift by
the amount measured for it on the bundled model, with headroom.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainers.export import ExportError, cpu_threads, quiet_transformers

# Varied, short chat turns: persona questions, instructions, small talk.
DEFAULT_PROMPTS = (
    "Tell me a little about yourself.",
    "What do you like to do on weekends?",
    "Can you explain what a rainbow is in two sentences?",
    "Write a short greeting for a new neighbour.",
    "What is your favourite food, and why?",
    "Give me three tips for sleeping better.",
    "How would you describe the sea to someone who has never seen it?",
    "What did you learn recently that surprised you?",
)
N_POSITIONS = 32
N_GREEDY = 8


@dataclass(frozen=True)
class Bounds:
    """Pass when top-1 agreement >= top1_min, mean KL <= kl_max (nats) and at least
    greedy_min of the prompts give the same first N_GREEDY greedy tokens."""

    top1_min: float
    kl_max: float
    greedy_min: float = 0.0


# Measured on the bundled SmolLM2-135M with random r=8 LoRAs (lora_B ~ N(0, 0.1)) merged, 8 prompts
# x 32 positions (top-1 / mean KL nats / prompts with equal greedy starts); columns: adapter 1 at
# 1 and at 2 threads (thread count changes summation order, so near-ties flip), adapter 2:
#   f16     1.000 / 0.00001 / 100%   0.996 / 0.00001 / 100%   1.000 / 0.0000 / 100%
#   q8_0    0.969 / 0.0058 / 75%     0.945 / 0.0066 / 38%     0.949 / 0.0055 / 50%
#   q6_k                                                      0.938 / 0.0145 / 50%
#   q5_k_m                                                    0.852 / 0.060 / 50%
#   q4_k_m  0.887 / 0.082 / 38%      0.828 / 0.089 / 12%      0.867 / 0.076 / 38%
#   q4_0                                                      0.672 / 0.42 / 0%
# A 135M model with 576-wide rows is a hard case for quantisation (many k-quant tensors fall back
# to q5_0/q8_0); bigger models drift less. The bounds leave 2-3x headroom on KL. Greedy equality
# is required only of f16: a random adapter on a tiny model has many near-ties, so a quantised
# model's greedy path splits early even when its distributions are close (it is still reported).
# Types not in the table (bf16, *_k_s, q5_0/1, q4_1, iq4_*) have bounds set by analogy.
BOUNDS: dict[str, Bounds] = {
    "f32": Bounds(0.97, 0.01, 0.75),
    "f16": Bounds(0.97, 0.01, 0.75),
    "bf16": Bounds(0.95, 0.02),
    "q8_0": Bounds(0.90, 0.05),
    "q6_k": Bounds(0.85, 0.06),
    "q5_k_m": Bounds(0.75, 0.20),
    "q5_k_s": Bounds(0.75, 0.20),
    "q5_0": Bounds(0.75, 0.20),
    "q5_1": Bounds(0.75, 0.20),
    "q4_k_m": Bounds(0.75, 0.25),
    "q4_k_s": Bounds(0.72, 0.30),
    "q4_0": Bounds(0.55, 0.80),
    "q4_1": Bounds(0.55, 0.80),
    "iq4_nl": Bounds(0.55, 0.80),
    "iq4_xs": Bounds(0.55, 0.80),
}
# Types below 4 bits (and exotic ones) on a 135M model drift so far that a bound would only say
# "it is a different model": they are measured and reported, and pass unless they are broken.
LOOSE = Bounds(0.30, 3.0)
# The LoRA GGUF on a GGUF base (the bundled model): transformers' base is that very GGUF
# dequantised, so only llama.cpp's compute precision differs (measured top-1 0.95-0.98, KL 0.004).
ADAPTER_ON_GGUF_BASE = Bounds(0.88, 0.03)


def bounds_for(gguf_type: str) -> Bounds:
    return BOUNDS.get(gguf_type.lower(), LOOSE)


@dataclass
class Reference:
    """The transformers side, computed once and compared with every GGUF of the export."""

    prompts: list[str]  # rendered chat-template text
    prompt_ids: list[list[int]]
    cont_ids: list[list[int]]  # greedy continuation, N_POSITIONS tokens (EOS not special-cased)
    logprobs: list[Any]  # per prompt: float32 array (N_POSITIONS, vocab), log-softmax
    eos_ids: list[int]
    seconds: float = 0.0


@dataclass
class Check:
    """One GGUF's verification; `to_dict` goes into report.json."""

    gguf: str
    type: str
    bounds: Bounds
    passed: bool = False
    reason: str = ""
    tokens_match: bool = True
    token_mismatch: str = ""
    top1: float = 0.0
    mean_kl: float = 0.0
    max_kl: float = 0.0
    greedy_equal: float = 0.0  # fraction of prompts with equal first N_GREEDY greedy tokens
    greedy_prefix: list[int] = field(default_factory=list)  # per prompt: leading tokens equal
    sample: dict[str, str] = field(default_factory=dict)
    lora: str = ""
    positions: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("top1", "mean_kl", "max_kl", "greedy_equal"):
            d[k] = round(float(d[k]), 5)
        return d

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        b = self.bounds
        return (
            f"{verdict} {Path(self.gguf).name}: top-1 {self.top1:.3f} (>= {b.top1_min}), "
            f"mean KL {self.mean_kl:.4f} nats (<= {b.kl_max}), greedy first {N_GREEDY} tokens equal "
            f"in {self.greedy_equal:.0%} of prompts (>= {b.greedy_min:.0%})"
            + (f" - {self.reason}" if self.reason and not self.passed else "")
        )


def render_prompts(tokenizer: Any, prompts: Sequence[str] = DEFAULT_PROMPTS, system: str | None = None) -> list[str]:
    out = []
    for p in prompts:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
        out.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return out


def _hf_ids(tokenizer: Any, text: str) -> list[int]:
    # apply_chat_template(tokenize=True) does exactly this: the template carries its own specials.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_reference(
    hf_dir: str | Path,
    tokenizer: Any,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    n_positions: int = N_POSITIONS,
    model: Any = None,
    threads: int | None = None,
) -> Reference:
    """Greedy continuations and next-token log-probabilities of the merged model in transformers
    (on `threads` torch threads; None: `cpu_threads()`)."""
    import torch

    t0 = time.monotonic()
    before = torch.get_num_threads()
    torch.set_num_threads(threads or cpu_threads())
    try:
        return _reference(hf_dir, tokenizer, prompts, n_positions, model, t0)
    finally:
        torch.set_num_threads(before)


def _reference(
    hf_dir: str | Path, tokenizer: Any, prompts: Sequence[str], n_positions: int, model: Any, t0: float
) -> Reference:
    import numpy as np
    import torch

    if model is None:
        from transformers import AutoModelForCausalLM

        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
        model.eval()
    texts = render_prompts(tokenizer, prompts)
    eos = tokenizer.eos_token_id
    eos_ids = sorted({e for e in ([eos] if isinstance(eos, int) else list(eos or [])) if e is not None})
    ref = Reference(
        prompts=texts, prompt_ids=[_hf_ids(tokenizer, t) for t in texts], cont_ids=[], logprobs=[], eos_ids=eos_ids
    )
    pad = 0
    with torch.inference_mode():
        # Greedy continuations for all prompts at once (left-padded), past EOS: the path only
        # has to be the same for both models, and a fixed length keeps positions comparable.
        width = max(len(ids) for ids in ref.prompt_ids)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in ref.prompt_ids])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in ref.prompt_ids])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
        steps = [out.logits[:, -1].argmax(-1)]
        for _ in range(n_positions - 1):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=steps[-1][:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            steps.append(out.logits[:, -1].argmax(-1))
        ref.cont_ids = torch.stack(steps, dim=1).tolist()
        # Teacher-forced distributions, right-padded (padding after a sequence cannot change it).
        seqs = [ids + cont for ids, cont in zip(ref.prompt_ids, ref.cont_ids)]
        width = max(len(s) for s in seqs)
        full = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        fmask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logits = model(input_ids=full, attention_mask=fmask).logits
        for i, ids in enumerate(ref.prompt_ids):
            rows = logits[i, len(ids) - 1 : len(ids) - 1 + n_positions].double()
            ref.logprobs.append(torch.log_softmax(rows, dim=-1).float().numpy().astype(np.float32))
    ref.seconds = round(time.monotonic() - t0, 2)
    return ref


def _llama_ids(llm: Any, text: str) -> list[int]:
    """llama.cpp's ids for the rendered text, as its chat path builds them (one BOS at most)."""
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    bos = llm.token_bos()
    if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return ids


def _describe_mismatch(tokenizer: Any, i: int, a: list[int], b: list[int]) -> str:
    k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    def tok(ids: list[int]) -> str:
        return repr(tokenizer.convert_ids_to_tokens(ids[k])) if k < len(ids) else "(end)"

    return (
        f"prompt {i + 1} tokenises differently at position {k}: transformers has "
        f"{a[k] if k < len(a) else 'nothing'} {tok(a)}, llama.cpp has {b[k] if k < len(b) else 'nothing'} {tok(b)} "
        f"({len(a)} vs {len(b)} tokens)"
    )


def open_gguf(gguf: str | Path, n_ctx: int, lora: str | Path | None = None, threads: int | None = None) -> Any:
    from llama_cpp import Llama

    from engines.llamacpp import gpu_layers

    threads = threads or cpu_threads()
    kwargs: dict[str, Any] = {
        "model_path": str(gguf),
        "n_ctx": n_ctx,
        "n_batch": 512,
        "logits_all": True,
        "verbose": False,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": gpu_layers(),
    }
    if lora:
        kwargs["lora_path"] = str(lora)
    try:
        return Llama(**kwargs)
    except (ValueError, RuntimeError, OSError) as e:
        extra = f" with the LoRA {lora}" if lora else ""
        raise ExportError(f"llama.cpp cannot load {gguf}{extra} ({e}); the file is missing or corrupt.") from None


def check_gguf(
    gguf: str | Path,
    ref: Reference,
    tokenizer: Any,
    gguf_type: str,
    lora: str | Path | None = None,
    bounds: Bounds | None = None,
    threads: int | None = None,
) -> Check:
    """Compare one GGUF (optionally with a LoRA GGUF on top) with the reference."""
    import numpy as np

    t0 = time.monotonic()
    bounds = bounds or bounds_for(gguf_type)
    check = Check(gguf=str(gguf), type=gguf_type, bounds=bounds, lora=str(lora or ""))
    longest = max(len(p) + len(c) for p, c in zip(ref.prompt_ids, ref.cont_ids))
    llm = open_gguf(gguf, n_ctx=longest + 16, lora=lora, threads=threads)
    try:
        if llm.n_vocab() != ref.logprobs[0].shape[1]:
            check.reason = (
                f"the GGUF has {llm.n_vocab()} tokens in its vocabulary but the merged model has "
                f"{ref.logprobs[0].shape[1]}"
            )
            check.tokens_match = False
            check.seconds = round(time.monotonic() - t0, 2)
            return check
        mismatches = []
        for i, text in enumerate(ref.prompts):
            ids = _llama_ids(llm, text)
            if ids != ref.prompt_ids[i]:
                mismatches.append(_describe_mismatch(tokenizer, i, ref.prompt_ids[i], ids))
        if mismatches:
            check.tokens_match = False
            check.token_mismatch = mismatches[0] + (
                f" (and {len(mismatches) - 1} more prompts)" if len(mismatches) > 1 else ""
            )
        agree, kls, prefixes, complete = [], [], [], []
        for ids, cont, lp_hf in zip(ref.prompt_ids, ref.cont_ids, ref.logprobs):
            llm.reset()
            llm.eval(ids + cont)
            rows = np.asarray(llm.scores[len(ids) - 1 : len(ids) - 1 + len(cont)], dtype=np.float64)
            m = rows.max(axis=1, keepdims=True)
            lp_g = rows - (m + np.log(np.exp(rows - m).sum(axis=1, keepdims=True)))
            p_hf = np.exp(lp_hf.astype(np.float64))
            kls.extend((p_hf * (lp_hf - lp_g)).sum(axis=1).tolist())
            agree.extend((lp_g.argmax(axis=1) == lp_hf.argmax(axis=1)).tolist())
            # llama.cpp's own greedy decoding from the prompt.
            gen: list[int] = []
            for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
                gen.append(int(tok))
                if tok in ref.eos_ids or len(gen) >= N_GREEDY:
                    break
            want = cont[: _reference_len(cont, ref.eos_ids)]
            prefixes.append(next((j for j, (x, y) in enumerate(zip(want, gen)) if x != y), min(len(want), len(gen))))
            complete.append(prefixes[-1] >= len(want))
            if len(check.sample) == 0:
                check.sample = {
                    "transformers": tokenizer.decode(want, skip_special_tokens=False),
                    "llama.cpp": tokenizer.decode(gen, skip_special_tokens=False),
                }
        check.positions = len(agree)
        check.top1 = float(np.mean(agree))
        # KL is >= 0; a tiny negative mean is rounding. NaN must stay NaN (max(0, nan) is 0).
        check.mean_kl = float(np.mean(kls)) if not np.isfinite(np.mean(kls)) else max(0.0, float(np.mean(kls)))
        check.max_kl = float(np.max(kls))
        check.greedy_prefix = prefixes
        check.greedy_equal = float(np.mean(complete))
    finally:
        llm.close()
    reasons = []
    if not check.tokens_match:
        reasons.append(check.token_mismatch or check.reason)
    if not np.isfinite(check.mean_kl):
        reasons.append("llama.cpp produced non-finite logits")
    if check.top1 < bounds.top1_min:
        reasons.append(f"top-1 agreement {check.top1:.3f} is below {bounds.top1_min}")
    if not check.mean_kl <= bounds.kl_max:
        reasons.append(f"mean KL {check.mean_kl:.4f} nats is above {bounds.kl_max}")
    if check.greedy_equal < bounds.greedy_min:
        reasons.append(
            f"greedy continuations match in {check.greedy_equal:.0%} of prompts, below {bounds.greedy_min:.0%}"
        )
    check.passed = not reasons
    check.reason = "; ".join(reasons)
    check.seconds = round(time.monotonic() - t0, 2)
    return check


def _reference_len(cont: list[int], eos_ids: list[int]) -> int:
    """How many of the reference's first greedy tokens llama.cpp must reproduce (up to EOS)."""
    want = cont[:N_GREEDY]
    return next((j + 1 for j, t in enumerate(want) if t in eos_ids), len(want))
