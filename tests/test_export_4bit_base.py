"""A run trained on a 4-bit base exports by merging into the full-precision original.

unsloth's pre-quantised repos (`…-bnb-4bit`) carry a bitsandbytes `quantization_config`; loading
them needs bitsandbytes and CUDA, and merging into them would round the update into NF4. The
export picks the model they were quantised from instead. Here a Hugging Face cache the test makes
holds `unsloth/tiny-llama-bnb-4bit` (its config says bitsandbytes 4-bit) and `unsloth/tiny-llama`
(the full-precision tiny Llama); the adapter's RUN.json names the 4-bit one, as an unsloth run on
it writes, and the whole export (merge, F16, q8_0, verification) runs on the original.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from supervisor import jobs
from trainers.export import ExportError
from trainers.export.merge import full_precision_base, quantization_of
from trainers.train.hardware import cuda_count

FULL, QUANT = "unsloth/tiny-llama", "unsloth/tiny-llama-bnb-4bit"
BNB_4BIT = {
    "quant_method": "bitsandbytes",
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_use_double_quant": True,
}


def _snapshot(cache: Path, repo: str, folder: Path, config_extra: dict | None = None) -> Path:
    storage = cache / f"models--{repo.replace('/', '--')}"
    snap = storage / "snapshots" / ("a" * 40)
    shutil.copytree(folder, snap)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text("a" * 40)
    if config_extra:
        config = json.loads((snap / "config.json").read_text())
        config.update(config_extra)
        (snap / "config.json").write_text(json.dumps(config))
    return snap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from train_fixtures import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_prequantised_base_merges_into_its_original(hub, tiny):
    _snapshot(hub, FULL, tiny)
    _snapshot(hub, QUANT, tiny, {"quantization_config": BNB_4BIT})
    assert quantization_of(QUANT) == "bitsandbytes 4-bit" and quantization_of(FULL) == ""
    assert full_precision_base(QUANT) == FULL
    assert full_precision_base(FULL) == FULL  # hf QLoRA / unsloth quantising on the fly: already full precision
    assert full_precision_base("bundled:smollm2-135m-instruct") == "bundled:smollm2-135m-instruct"


def test_a_missing_original_says_what_to_pull(hub, tiny):
    _snapshot(hub, QUANT, tiny, {"quantization_config": BNB_4BIT})
    with pytest.raises(ExportError) as e:
        full_precision_base(QUANT)
    msg = str(e.value)
    assert msg == (
        f"the run's base model is the bitsandbytes 4-bit checkpoint {QUANT}; its adapter is merged into "
        f"the full-precision {FULL}, which is not on this machine: fetch it with `persona-tui models pull "
        f"{FULL}`, or name the full-precision base with --base MODEL."
    )


def test_a_quantised_local_folder_asks_for_the_base(tmp_path, tiny):
    folder = shutil.copytree(tiny, tmp_path / "my-4bit")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": BNB_4BIT}))
    with pytest.raises(
        ExportError,
        match=r"checkpoint .*my-4bit; an adapter is merged into full-precision weights, "
        r"so name the model it was quantised from .*\(--base MODEL\)\.$",
    ):
        full_precision_base(str(folder))


def _adapter(tiny: Path, out: Path, base_name: str) -> Path:
    """A LoRA on the tiny Llama with visible weights, and the RUN.json a run on `base_name` writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
    )
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft_model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny)).save_pretrained(str(out))
    (out / "RUN.json").write_text(json.dumps({"run": "q", "base_model": base_name, "method": "sft", "step": 3}))
    return out


@pytest.mark.slow
def test_the_whole_export_of_a_4bit_run_uses_the_full_precision_base(hub, tiny, tmp_path):
    from sessions.model import Session
    from sessions.store import SessionFile
    from trainers.export.job import create_export_job
    from trainers.export.reader import read_report
    from trainers.worker import KINDS

    _snapshot(hub, FULL, tiny)
    _snapshot(hub, QUANT, tiny, {"quantization_config": BNB_4BIT})
    adapter = _adapter(tiny, tmp_path / "adapter", QUANT)
    sf = SessionFile.create(tmp_path / "s.toml", Session(name="q"))
    job_dir = create_export_job(sf.workspace, adapter=adapter, quants="q8_0", options={"adapter_gguf": False})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error + "\n" + jobs.log_tail(job_dir, 20)
    report = read_report(job_dir)
    assert report["base_model"] == FULL and report["trained_on"] == QUANT
    merged = job_dir / "export" / "merged"
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    # The merged weights are the full-precision base plus the adapter's update, nothing rounded.
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    want = (
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32), str(adapter))
        .merge_and_unload()
        .state_dict()
    )
    got = load_file(str(merged / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(got[name], want[name])
    assert not torch.equal(got[name], load_file(str(tiny / "model.safetensors"))[name])  # the adapter did change it
    assert "merging the adapter into unsloth/tiny-llama (the full-precision original of " in jobs.log_tail(job_dir, 100)
    checks = [f for f in report["files"] if f["kind"] == "gguf"]
    assert {f.get("type") for f in checks} == {"f16", "q8_0"}


@pytest.mark.skipif(
    not cuda_count(),
    reason="loading a base in 4-bit needs bitsandbytes and a CUDA GPU; "
    "scripts/gpu-check runs the hf QLoRA and unsloth 4-bit steps there",
)
def test_an_hf_qlora_run_trains_on_cuda_and_exports_from_the_full_base(tmp_path, tiny):
    from train_fixtures import CHATS, make_session, tiny_run
    from trainers.export.job import create_export_job
    from trainers.export.reader import read_report
    from trainers.train.job import create_train_job
    from trainers.worker import KINDS

    run = tiny_run("qlora", ["chats"], load_in_4bit=True)
    run.base_model = str(tiny)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    train = create_train_job(sf, "qlora")
    assert jobs.run_job_inline(train, KINDS).state == "finished"
    job_dir = create_export_job(sf.workspace, train_job=train.name, quants="q8_0", options={"adapter_gguf": False})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    assert read_report(job_dir)["base_model"] == str(tiny)
