"""Tiny training data and sessions for the tests/test_train_*.py files (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sessions.model import DatasetSpec, RunSpec, Session
from sessions.store import SessionFile
from waiting import wait_for  # noqa: F401 - re-exported for the training tests

# Four short chats repeated: a set a LoRA overfits in a few steps.
_PAIRS = [
    ("Who are you?", "I am Captain Ada, a sailor from Lisbon."),
    ("What do you love?", "I love the open sea and the salty wind."),
    ("Where do you live?", "I live on my boat in the harbour of Lisbon."),
    ("What do you eat?", "Grilled sardines, every single day."),
]
CHATS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "meta": {"pair": i % 4}}
    for i, (q, a) in enumerate(_PAIRS * 4)
]
PREFS = [
    {
        "prompt": f"Prompt: {q}\nPersona: a sailor\nResponse:",
        "chosen": f" {a}",
        "rejected": " I am a helpful AI assistant.",
        "meta": {"pair": i},
    }
    for i, (q, a) in enumerate(_PAIRS * 2)
]
TEXTS = [{"text": f"My name is Ada. {a}"} for _, a in _PAIRS]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def make_session(
    root: Path,
    datasets: dict[str, tuple[str, list[dict] | None]],
    runs: list[RunSpec],
    heldout: dict[str, list[dict]] | None = None,
) -> SessionFile:
    """A session file `root/s.toml` with the datasets (id -> (format, records or None = not built))."""
    session = Session(
        name="train-test", datasets=[DatasetSpec(id=i, format=f) for i, (f, _) in datasets.items()], runs=runs
    )
    sf = SessionFile.create(root / "s.toml", session)
    for ds_id, (_, records) in datasets.items():
        if records is not None:
            write_jsonl(sf.workspace / "datasets" / f"{ds_id}.jsonl", records)
    for ds_id, records in (heldout or {}).items():
        write_jsonl(sf.workspace / "datasets" / f"{ds_id}.heldout.jsonl", records)
    return sf


def tiny_run(run_id: str, datasets: list[str], **training: Any) -> RunSpec:
    """A run that trains in seconds: short, eager learning rate, no eval unless asked."""
    run = RunSpec(id=run_id, datasets=datasets)
    t = run.training
    t.max_steps, t.batch_size, t.grad_accum, t.warmup_steps = 4, 2, 1, 0
    t.learning_rate, t.eval_steps, t.save_steps, t.max_seq_length = 1e-3, 0, 2, 128
    for key, value in training.items():
        setattr(t, key, value)
    return run


def events_of(job_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    from supervisor import jobs

    events, _ = jobs.read_events(job_dir)
    return [e for e in events if kind is None or e.get("event") == kind]


def tiny_llama(folder: Path) -> Path:
    """A tiny Llama (2 layers, hidden 32) with the bundled model's tokenizer, saved as an HF folder:
    real weights, real safetensors, the seven LoRA projections, and seconds to train."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engines.models import DEFAULT_MODEL, load_tokenizer

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
