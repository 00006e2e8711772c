"""Merge a PEFT LoRA adapter into its base model and save a plain HF folder.

The merged folder (safetensors, tokenizer, chat template) is what llama.cpp's converter reads and
what verification compares the GGUF against, so the tokenizer saved with it is the one the run
trained with: the adapter folder's own tokenizer when the trainer saved one, else the base's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from trainers.export import ExportError, quiet_transformers

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


# unsloth's pre-quantised repos name their full-precision original with a suffix dropped
# ("unsloth/Llama-3.2-1B-Instruct-bnb-4bit" -> "unsloth/Llama-3.2-1B-Instruct"); longest first.
QUANTIZED_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit", "-unsloth-bnb-8bit", "-bnb-8bit")


def quantization_of(base_model: str) -> str:
    """How the base's checkpoint is quantised ("bitsandbytes 4-bit", ...), or "" for full-precision
    weights (and for a GGUF, which transformers dequantises)."""
    from engines.base import EngineError
    from engines.models import resolve_model

    try:
        model = resolve_model(base_model)
    except EngineError:
        return ""
    if model.kind != "hf":
        return ""
    try:
        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return ""
    method = str(quant.get("quant_method") or "quantized")
    bits = (
        "4-bit"
        if quant.get("load_in_4bit") or quant.get("_load_in_4bit")
        else "8-bit"
        if quant.get("load_in_8bit") or quant.get("_load_in_8bit")
        else ""
    )
    return f"{method} {bits}".strip()


def full_precision_base(base_model: str) -> str:
    """The model an adapter is merged into: `base_model` itself, unless it is a pre-quantised
    checkpoint (unsloth's -bnb-4bit repos, any folder whose config carries a quantization_config),
    whose full-precision original is chosen instead. Merging into 4-bit weights would round the
    update into NF4 and write weights llama.cpp's converter cannot read; a run trained on a 4-bit
    base (QLoRA) learned its adapter for the full-precision model those weights approximate.
    A base quantised on the fly (hf QLoRA, unsloth's load_in_4bit of a full model) is already the
    full-precision name and passes through unchanged."""
    repo = base_model.partition("@")[0]
    quant = quantization_of(base_model)
    suffix = next((s for s in QUANTIZED_SUFFIXES if repo.lower().endswith(s)), "")
    if not quant and not suffix:
        return base_model
    what = f"the {quant} checkpoint {base_model}" if quant else f"the 4-bit checkpoint {base_model}"
    if not suffix or "/" not in repo or Path(repo).expanduser().exists():
        raise ExportError(
            f"the run's base model is {what}; an adapter is merged into full-precision weights, so name "
            "the model it was quantised from as the export's base model (--base MODEL)."
        )
    original = repo[: len(repo) - len(suffix)]
    from engines.base import EngineError
    from engines.models import resolve_model

    try:
        resolve_model(original)
    except EngineError:
        raise ExportError(
            f"the run's base model is {what}; its adapter is merged into the full-precision {original}, "
            f"which is not on this machine: fetch it with `persona-tui models pull {original}`, or name "
            "the full-precision base with --base MODEL."
        ) from None
    if quantization_of(original):
        raise ExportError(
            f"the run's base model is {what}, and {original} is quantised too; name the full-precision "
            "base with --base MODEL."
        )
    return original


def check_adapter(adapter_dir: str | Path) -> dict[str, Any]:
    """The adapter's adapter_config.json, or an ExportError saying what is missing."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise ExportError(
            f"the adapter folder {adapter_dir} does not exist; train the run first or name its adapter/ folder."
        )
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise ExportError(
            f"{adapter_dir} has no adapter_config.json, so it is not a PEFT adapter; name a finished run's adapter/ folder."
        )
    weights = [adapter_dir / "adapter_model.safetensors", adapter_dir / "adapter_model.bin"]
    if not any(w.is_file() for w in weights):
        raise ExportError(
            f"{adapter_dir} has adapter_config.json but no adapter_model.safetensors; the run did not finish saving."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{config_path} is not valid JSON ({e}); re-save the adapter.") from None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise ExportError(
            f"{config_path} describes a {config.get('peft_type')} adapter; only LoRA adapters can be exported."
        )
    return config


def adapter_tokenizer_source(adapter_dir: str | Path, base_model: str) -> str:
    """Where the run's tokenizer lives: the adapter folder if the trainer saved one there."""
    adapter_dir = Path(adapter_dir)
    if any((adapter_dir / f).is_file() for f in TOKENIZER_FILES):
        return str(adapter_dir)
    return base_model


def load_run_tokenizer(adapter_dir: str | Path, base_model: str) -> Any:
    from engines.models import load_tokenizer

    source = adapter_tokenizer_source(adapter_dir, base_model)
    if source == base_model:
        return load_tokenizer(base_model)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def merge_adapter(adapter_dir: str | Path, base_model: str, out_dir: str | Path) -> dict[str, Any]:
    """Write base+adapter merged (float32 safetensors) with the run's tokenizer to `out_dir`."""
    check_adapter(adapter_dir)
    with quiet_transformers():
        return _merge(adapter_dir, base_model, Path(out_dir))


def _merge(adapter_dir: str | Path, base_model: str, out_dir: Path) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from engines.models import load_hf_model

    t0 = time.monotonic()
    base = load_hf_model(base_model, dtype="float32")
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    except Exception as e:  # noqa: BLE001 - shape or module mismatches come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"the adapter {adapter_dir} does not fit the base model {base_model} ({first}); "
            "export with the base model the run was trained on."
        ) from e
    with torch.no_grad():
        merged = model.merge_and_unload()
    merged.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer = load_run_tokenizer(adapter_dir, base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ExportError(
            f"the tokenizer of {adapter_tokenizer_source(adapter_dir, base_model)} has no chat template; "
            "a chat export needs one (save the tokenizer with its template in the adapter folder)."
        )
    tokenizer.save_pretrained(str(out_dir))
    return {"seconds": round(time.monotonic() - t0, 2), "bytes": folder_bytes(out_dir)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
