"""Run specs: defaults, TOML round trip, validation that names the field, machine checks,
the accelerate command, data conversion and failure sentences. No training here."""

from __future__ import annotations

import dataclasses
import errno
import shlex
from pathlib import Path

import pytest

from sessions.model import DatasetSpec, RunSpec, Session
from sessions.run_spec import (
    ALL_PROJECTIONS,
    LoraSettings,
    TrainingSettings,
    run_from_dict,
    run_to_dict,
    validate_run,
    wants_padding_free,
)
from sessions.store import SessionFile
from train_fixtures import CHATS, PREFS, TEXTS, make_session, tiny_run, write_jsonl
from trainers.train.backends import validate
from trainers.train.job import RunSpecError, accelerate_command, create_train_job, explain
from trainers.train.run_data import DatasetFile, RunDataError, prepare_dpo, prepare_sft, split_turns, to_openai_chat


def test_defaults_are_the_documented_recipe():
    lora, t = LoraSettings(), TrainingSettings()
    assert (lora.r, lora.alpha, lora.dropout, lora.use_rslora) == (16, 16, 0.0, False)
    assert (
        lora.target_modules
        == list(ALL_PROJECTIONS)
        == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert (t.learning_rate, t.lr_scheduler, t.warmup_steps, t.num_epochs, t.max_steps) == (2e-4, "linear", 5, 1, 0)
    assert (t.batch_size, t.grad_accum, t.max_seq_length, t.weight_decay) == ("auto", 4, 512, 0.01)
    assert (t.optimizer, t.seed, t.logging_steps, t.eval_steps, t.save_steps) == ("auto", 3407, 1, 20, 20)
    assert (t.completion_only_loss, t.precision, t.load_in_4bit, t.packing, t.num_threads) == (
        True,
        "auto",
        None,
        False,
        0,
    )
    assert t.padding_free is None
    for cls in (LoraSettings, TrainingSettings):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_run_settings_round_trip_through_the_session_toml(tmp_path):
    run = RunSpec(id="r1", datasets=["d"])
    run.lora.r, run.lora.target_modules, run.training.max_steps = 8, ["q_proj", "v_proj"], 30
    sf = SessionFile.create(
        tmp_path / "s.toml", Session(datasets=[DatasetSpec(id="d", format="chat_demos")], runs=[run])
    )
    text = sf.path.read_text()
    assert "[runs.lora]" in text and "[runs.training]" in text
    back = SessionFile.load(sf.path).session.run("r1")
    assert back == run
    assert run_from_dict(run_to_dict(run)) == run


def test_validation_names_each_bad_field():
    session = Session(datasets=[DatasetSpec(id="d", format="chat_demos"), DatasetSpec(id="p", format="tailoring_dpo")])
    run = RunSpec(id="r1", datasets=["d"])
    assert validate_run(run, session) == []
    run.training.learning_rate = -1
    run.training.batch_size = 0
    run.training.precision = "fp8"
    run.lora.dropout = 1.5
    run.lora.target_modules = []
    run.datasets = ["d", "nope"]
    problems = validate_run(run, session)
    text = "\n".join(problems)
    assert "run 'r1': training.learning_rate is -1; it must be a number from 1e-09 to 1.0 (default 0.0002)." in problems
    assert "training.batch_size is 0" in text
    assert "training.precision is 'fp8'; choose one of auto, fp32, bf16, fp16" in text
    assert "lora.dropout is 1.5" in text
    assert "lora.target_modules is []" in text
    assert "datasets names 'nope', which is not a dataset of this session (known: d, p)." in text
    assert len(problems) == 6

    dpo = RunSpec(id="r2", datasets=["d"], method="dpo")
    assert any("method is dpo, which needs preference pairs" in p for p in validate_run(dpo, session))
    sft_on_prefs = RunSpec(id="r3", datasets=["p"])
    assert any('use method = "dpo" for it' in p for p in validate_run(sft_on_prefs, session))
    typo = RunSpec(id="r4", datasets=["d"], backend="unslot")
    assert validate_run(typo, session) == ["run 'r4': backend is 'unslot'; choose one of hf, unsloth, openai."]


def test_padding_free_is_auto_on_a_cpu_only_for_hf_sft_and_refused_where_it_means_nothing():
    session = Session(datasets=[DatasetSpec(id="d", format="chat_demos"), DatasetSpec(id="p", format="tailoring_dpo")])
    run = RunSpec(id="r1", datasets=["d"])
    assert (wants_padding_free(run, "cpu"), wants_padding_free(run, "cuda")) == (True, False)
    run.training.padding_free = True
    assert wants_padding_free(run, "cuda") and validate_run(run, session) == []
    run.training.padding_free = False
    assert not wants_padding_free(run, "cpu")
    run.training.padding_free, run.training.packing = None, True  # packing lays rows out itself
    assert not wants_padding_free(run, "cpu")
    dpo = RunSpec(id="r2", datasets=["p"], method="dpo")
    assert not wants_padding_free(dpo, "cpu")
    dpo.training.padding_free = True
    assert validate_run(dpo, session) == [
        "run 'r2': training.padding_free applies to SFT on the hf backend only (this run is dpo on hf); unset it."
    ]
    run.training.padding_free = "yes"
    assert any(p.startswith("run 'r1': training.padding_free is 'yes'") for p in validate_run(run, session))


def test_unsloth_is_refused_at_validation_without_a_gpu():
    session = Session(datasets=[DatasetSpec(id="d", format="chat_demos")])
    run = RunSpec(id="u", datasets=["d"], backend="unsloth")
    problems = validate(run, session)
    assert problems == [
        "run 'u': backend is unsloth, which trains only on an NVIDIA GPU with CUDA, and this machine has none; "
        'use backend = "hf" to train on the CPU.'
    ]


class _Recorded(Exception):
    pass


def _fake_unsloth(calls: dict):
    """A stand-in `unsloth` module that records how the backend calls it (no GPU here to run it)."""
    import types

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            calls["from_pretrained"] = kwargs
            return object(), object()

        @staticmethod
        def get_peft_model(model, **kwargs):
            calls["get_peft_model"] = kwargs
            raise _Recorded()

    module = types.ModuleType("unsloth")
    module.FastLanguageModel = FastLanguageModel
    module.PatchDPOTrainer = lambda: calls.setdefault("patched_dpo", True)
    return module


@pytest.mark.parametrize(
    "method, four_bit, expected", [("sft", None, True), ("sft", False, False), ("dpo", None, True)]
)
def test_the_unsloth_backend_calls_fastlanguagemodel_as_its_docs_say(monkeypatch, tmp_path, method, four_bit, expected):
    import sys

    from trainers.train.backends import TrainContext, unsloth_backend
    from trainers.train.hardware import Device

    calls: dict = {}
    monkeypatch.setitem(sys.modules, "unsloth", _fake_unsloth(calls))
    monkeypatch.setattr(
        "trainers.train.hardware.resolve_device", lambda *a, **k: Device("cuda", 1, "bf16", "adamw_8bit", 0)
    )
    run = RunSpec(id="u", base_model="bundled:smollm2-135m-instruct", datasets=["d"], backend="unsloth", method=method)
    run.training.load_in_4bit = four_bit
    run.lora.use_rslora = True

    class Job:
        def log(self, *a, **k):
            pass

    ctx = TrainContext(job=Job(), job_dir=tmp_path, run=run, datasets=[])
    with pytest.raises(_Recorded):
        unsloth_backend.Backend().setup(ctx)
    loaded = calls["from_pretrained"]
    assert loaded["load_in_4bit"] is expected and loaded["dtype"] is None
    assert loaded["max_seq_length"] == run.training.max_seq_length and Path(loaded["model_name"]).is_dir()
    peft = calls["get_peft_model"]
    assert peft == {
        "r": 16,
        "target_modules": list(ALL_PROJECTIONS),
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_gradient_checkpointing": "unsloth",
        "random_state": 3407,
        "use_rslora": True,
        "loftq_config": None,
    }
    assert calls.get("patched_dpo", False) is (method == "dpo")


def test_cpu_only_settings_are_refused_on_a_cpu():
    session = Session(datasets=[DatasetSpec(id="d", format="chat_demos")])
    run = RunSpec(id="c", datasets=["d"])
    run.training.optimizer = "adamw_8bit"
    run.training.load_in_4bit = True
    problems = validate(run, session)
    assert any("training.optimizer is adamw_8bit, which needs a CUDA GPU" in p for p in problems)
    assert any("training.load_in_4bit needs a CUDA GPU" in p for p in problems)


def test_create_train_job_refuses_an_invalid_run_before_anything_starts(tmp_path):
    sf = make_session(tmp_path, {"d": ("chat_demos", CHATS)}, [tiny_run("r1", ["d"], learning_rate=5.0)])
    with pytest.raises(RunSpecError) as err:
        create_train_job(sf, "r1")
    assert "training.learning_rate is 5.0" in str(err.value)
    assert not (sf.workspace / "jobs").exists()
    with pytest.raises(RunSpecError, match="run 'zz' is not in this session"):
        create_train_job(sf, "zz")


def test_accelerate_command_for_one_machine_and_for_a_config_file(tmp_path):
    job = tmp_path / "jobs" / "train-x"
    cmd = accelerate_command(job, 4, "bf16", python="/venv/bin/python")
    assert cmd == [
        "/venv/bin/python",
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        "4",
        "--mixed_precision",
        "bf16",
        "-m",
        "trainers.train.job",
        "--rank-worker",
        str(job.resolve()),
    ]
    cfg = tmp_path / "fsdp.yaml"
    cmd = accelerate_command(job, 8, "fp32", config_file=str(cfg), python="python")
    line = shlex.join(cmd)
    assert line.startswith(
        f"python -m accelerate.commands.launch --config_file {cfg} --mixed_precision no -m trainers.train.job"
    )
    assert "--num_processes" not in cmd  # the config file decides the topology (multi-node, DeepSpeed, FSDP)
    # The launcher module exists in the installed accelerate and the rank entry point parses its flag.
    import importlib.util

    assert importlib.util.find_spec("accelerate.commands.launch") is not None


def test_failures_become_one_sentence_that_keeps_checkpoints_in_view(tmp_path):
    ckpts = tmp_path / "checkpoints"
    (ckpts / "checkpoint-20").mkdir(parents=True)
    (ckpts / "checkpoint-20" / "trainer_state.json").write_text('{"global_step": 20}')
    (ckpts / "checkpoint-40").mkdir()  # cut short: no trainer_state.json
    full = OSError(errno.ENOSPC, "No space left on device", str(ckpts / "checkpoint-40" / "optimizer.pt"))
    text = explain(full, "r1", 2, 512, ckpts)
    assert text.startswith(f"the disk is full: writing {ckpts / 'checkpoint-40' / 'optimizer.pt'} failed;")
    assert "checkpoint-20" in text and "checkpoint-40 " not in text
    torch_style = RuntimeError(
        "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed"
    )
    assert explain(torch_style, "r1", 2, 512, ckpts).startswith("the disk is full")
    oom = RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123 bytes. out of memory")
    assert explain(oom, "r1", 16, 2048, ckpts).startswith(
        "run 'r1' ran out of memory with training.batch_size 16 and max_seq_length 2048;"
    )
    assert explain(MemoryError(), "r1", 2, 512, tmp_path / "none").endswith("no checkpoint had been saved yet.")
    assert explain(ValueError("something else"), "r1", 2, 512, ckpts) is None


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def tokenizer():
    from engines.models import load_tokenizer

    return load_tokenizer("bundled:smollm2-135m-instruct")


def _files(tmp_path: Path, **sets) -> list[DatasetFile]:
    out = []
    for name, (fmt, records) in sets.items():
        path = write_jsonl(tmp_path / f"{name}.jsonl", records)
        out.append(DatasetFile(name, fmt, str(path), str(tmp_path / f"{name}.heldout.jsonl")))
    return out


def test_chats_without_assistant_markers_become_completion_pairs(tmp_path, tokenizer):
    data = prepare_sft(_files(tmp_path, d=("chat_demos", CHATS)), tokenizer, completion_only=True)
    # SmolLM2's template has no {% generation %} markers and TRL cannot patch it: one pair a turn.
    assert data.shape == "prompt_completion_chat" and data.completion_only_loss and not data.assistant_only_loss
    assert data.train[0] == {"prompt": [CHATS[0]["messages"][0]], "completion": [CHATS[0]["messages"][1]]}
    full = prepare_sft(_files(tmp_path, d=("chat_demos", CHATS)), tokenizer, completion_only=False)
    assert full.shape == "messages" and not full.completion_only_loss and "meta" not in full.train[0]
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    pairs = split_turns(turns)
    assert [p["completion"][0]["content"] for p in pairs] == ["b", "d"] and len(pairs[1]["prompt"]) == 3


def test_a_template_with_generation_markers_uses_assistant_only_loss(tmp_path, tokenizer):
    import copy

    marked = copy.deepcopy(tokenizer)
    marked.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] == 'assistant' %}"
        "{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}{% else %}{{ m['content'] }}<|im_end|>"
        "{% endif %}\n{% endfor %}"
    )
    data = prepare_sft(_files(tmp_path, d=("chat_demos", CHATS)), marked, completion_only=True)
    assert data.shape == "messages" and data.assistant_only_loss


def test_mixed_text_and_chats_render_to_prompt_completion_text(tmp_path, tokenizer):
    data = prepare_sft(_files(tmp_path, d=("chat_demos", CHATS[:2]), t=("first_person", TEXTS[:1])), tokenizer, True)
    assert data.shape == "prompt_completion" and data.completion_only_loss
    chat, text = data.train[0], data.train[2]
    assert (
        chat["prompt"].endswith("<|im_start|>assistant\n")
        and chat["completion"] == "I am Captain Ada, a sailor from Lisbon.<|im_end|>"
    )
    assert text == {"prompt": "", "completion": TEXTS[0]["text"]}


def test_missing_empty_and_broken_datasets_name_the_file(tmp_path, tokenizer):
    missing = [DatasetFile("gone", "chat_demos", str(tmp_path / "gone.jsonl"))]
    with pytest.raises(
        RunDataError, match=r"dataset 'gone' has no examples file at .*gone.jsonl; build the dataset first"
    ):
        prepare_sft(missing, tokenizer, True)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(RunDataError, match=r"dataset 'empty' is empty"):
        prepare_sft([DatasetFile("empty", "chat_demos", str(tmp_path / "empty.jsonl"))], tokenizer, True)
    (tmp_path / "bad.jsonl").write_text(json_line(CHATS[0]) + "{not json\n")
    with pytest.raises(RunDataError, match=r"bad.jsonl line 2 is not valid JSON"):
        prepare_sft([DatasetFile("bad", "chat_demos", str(tmp_path / "bad.jsonl"))], tokenizer, True)


def json_line(record) -> str:
    import json

    return json.dumps(record) + "\n"


def test_preferences_for_dpo_and_chats_for_openai(tmp_path):
    data = prepare_dpo(_files(tmp_path, p=("tailoring_dpo", PREFS)))
    assert data.train[0] == {k: PREFS[0][k] for k in ("prompt", "chosen", "rejected")}
    chats = to_openai_chat(
        _files(
            tmp_path,
            d=("chat_demos", CHATS[:1]),
            s=("tailoring_sft", [{"prompt": "Prompt: hi\nPersona: sailor\nResponse:", "completion": " Ahoy!"}]),
        ),
        "sft",
    )
    assert chats[0] == {"messages": CHATS[0]["messages"]}
    assert chats[1]["messages"][-1] == {"role": "assistant", "content": "Ahoy!"}
    prefs = to_openai_chat(_files(tmp_path, p=("tailoring_dpo", PREFS[:1])), "dpo")
    assert prefs[0]["preferred_output"] == [{"role": "assistant", "content": PREFS[0]["chosen"].strip()}]


def test_auto_threads_leave_cores_busy_with_other_work_alone(monkeypatch):
    from trainers.train import hardware

    monkeypatch.setattr(hardware, "physical_cores", lambda: 4)
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    for others, want in [(0.1, 4), (1.2, 3), (9.0, 1), (0.0, 4), (2.6, 1)]:
        assert hardware.auto_threads(others) == want, others
