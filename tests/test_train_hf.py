"""The hf backend trains the bundled model for real, on this CPU, in a job.

One SFT run (6 steps on a tiny overfit set, eval every 3) and one DPO run (2 steps) are shared
by the tests of this file; bad input fails before any model is loaded.
"""

from __future__ import annotations

import json
import math

import pytest

from sessions.store import SessionFile
from supervisor import jobs
from train_fixtures import CHATS, PREFS, events_of, make_session, tiny_run
from trainers.train.job import create_train_job
from trainers.train.reader import read_result
from trainers.worker import KINDS

pytestmark = pytest.mark.slow
BASE = "bundled:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-hf")
    runs = [
        tiny_run("sft", ["chats"], max_steps=6, eval_steps=3, save_steps=3),
        tiny_run("dpo", ["prefs"], max_steps=2, learning_rate=5e-4),
    ]
    runs[1].method = "dpo"
    sf = make_session(
        root, {"chats": ("chat_demos", CHATS), "prefs": ("tailoring_dpo", PREFS)}, runs, heldout={"chats": CHATS[:2]}
    )
    out = {}
    for run_id in ("sft", "dpo"):
        job_dir = create_train_job(sf, run_id)
        out[run_id] = (job_dir, jobs.run_job_inline(job_dir, KINDS))
    return sf, out


def test_sft_finishes_with_finite_falling_loss(trained):
    _, out = trained
    job_dir, status = out["sft"]
    assert status.state == "finished", status.error
    assert (status.done, status.total) == (6, 6)
    losses = [e["loss"] for e in events_of(job_dir, "step")]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] * 0.8, losses
    assert sum(losses[-2:]) < sum(losses[:2])


def test_events_carry_the_run_metrics(trained):
    _, out = trained
    job_dir = out["sft"][0]
    begin = events_of(job_dir, "train_begin")[0]
    assert begin["device"] == "cpu" and begin["resumed_from"] is None and begin["trainable_params"] == 4_884_480
    assert begin["shape"] == "prompt_completion_chat" and begin["completion_only_loss"] is True
    assert begin["padding_free"] is True  # unset on a CPU: the micro-batches go unpadded
    assert (begin["batch_size"], begin["grad_accum"]) == (2, 1)  # the run's explicit integers win over auto
    assert not any(n.startswith("micro-batch auto") for n in begin["auto"])
    steps = events_of(job_dir, "step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    for e in steps:
        for key in ("epoch", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed", "peak_mb", "rss_mb"):
            assert isinstance(e[key], (int, float)) and e[key] >= 0, (key, e)
        assert e["max_steps"] == 6
    assert steps[1]["eta"] is not None and steps[-1]["eta"] == 0
    assert steps[0]["lr"] > steps[-1]["lr"]  # linear decay
    assert [e["step"] for e in events_of(job_dir, "eval")] == [3, 6]
    assert all(math.isfinite(e["eval_loss"]) for e in events_of(job_dir, "eval"))
    assert [e["step"] for e in events_of(job_dir, "checkpoint")] == [3, 6]
    end = events_of(job_dir, "train_end")[0]
    assert end["state"] == "finished" and end["s_per_step"] > 0 and end["tokens_per_s"] > 0 and end["peak_mb"] > 500


def test_adapter_is_standard_peft_and_changes_the_output(trained):
    import torch
    from peft import PeftModel

    from engines.models import load_hf_model, load_tokenizer

    _, out = trained
    job_dir = out["sft"][0]
    result = read_result(job_dir)
    adapter = job_dir / "adapter"
    assert result["adapter"] == str(adapter) and result["engine"]["adapter"] == str(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (
        config["peft_type"] == "LORA"
        and config["r"] == 16
        and sorted(config["target_modules"])
        == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    )
    assert (adapter / "adapter_model.safetensors").is_file()
    tok = load_tokenizer(BASE)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Who are you?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    base = load_hf_model(BASE)
    with torch.no_grad():
        before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, str(adapter))
    with torch.no_grad():
        after = tuned(ids).logits
    assert torch.isfinite(after).all()
    assert (after - before).abs().max().item() > 1e-2


def test_dpo_trains_a_few_steps_on_preference_pairs(trained):
    _, out = trained
    job_dir, status = out["dpo"]
    assert status.state == "finished", status.error
    steps = events_of(job_dir, "step")
    assert [e["step"] for e in steps] == [1, 2]
    assert all(math.isfinite(e["loss"]) for e in steps)
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=0.05)  # sigmoid DPO loss starts at log 2
    assert "reward_accuracy" in steps[-1]
    # TRL concatenates chosen and rejected into input_ids, so DPO steps count tokens too.
    assert steps[-1]["tokens_per_s"] and steps[-1]["tokens_per_s"] > 0
    assert (job_dir / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"datasets": ["unbuilt"]}, "dataset 'unbuilt' has no examples file at"),
        (
            {"base_model": "bundled:no-such-model"},
            "run 'bad': base_model 'bundled:no-such-model' cannot be used: unknown bundled model",
        ),
        (
            {"max_seq_length": 100_000},
            "run 'bad': training.max_seq_length is 100000, but bundled:smollm2-135m-instruct takes at most 8192 tokens",
        ),
    ],
)
def test_bad_input_fails_the_job_with_one_sentence(tmp_path, change, expected):
    run = tiny_run("bad", change.get("datasets", ["chats"]))
    if "base_model" in change:
        run.base_model = change["base_model"]
    if "max_seq_length" in change:
        run.training.max_seq_length = change["max_seq_length"]
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS), "unbuilt": ("chat_demos", None)}, [run])
    before = sf.path.read_text()
    job_dir = create_train_job(sf, "bad")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert expected in status.error and "\n" not in status.error
    assert sf.path.read_text() == before  # the session stays intact
    assert not (job_dir / "adapter").exists()


def test_twenty_steps_at_the_prior_works_defaults_on_the_demo_chats(tmp_path):
    """The issue's acceptance run: the bundled model, the demo persona's chat demos (template,
    40), every training setting at its default (r16/a16, lr 2e-4 linear, warmup 5, batch_size auto
    x 4, eval at step 20) but max_steps = 20. Measured at 2 x 4 fp32: ~2.4 min on 2 cores, loss
    3.5 -> 2.8; auto splits the same effective batch 8 as 8 x 1."""
    from sessions.demo import demo_session
    from sessions.run_spec import LoraSettings, TrainingSettings
    from trainers.data.build import build_dataset

    session = demo_session()
    spec = next(d for d in session.datasets if d.format == "chat_demos")
    spec.size = 40
    run = next(r for r in session.runs if spec.id in r.datasets)
    # The demo's run is the recipe (sessions.demo); this run is the defaults on the chat demos alone.
    run.datasets, run.lora, run.training = [spec.id], LoraSettings(), TrainingSettings(max_steps=20)
    sf = SessionFile.create(tmp_path / "demo.toml", session)
    build_dataset(sf.session, spec, sf.workspace)
    job_dir = create_train_job(sf, run.id)
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    begin = events_of(job_dir, "train_begin")[0]
    if run.training.batch_size == "auto" and run.training.grad_accum == 4:
        assert (begin["batch_size"], begin["grad_accum"]) == (8, 1)
    losses = [e["loss"] for e in events_of(job_dir, "step")]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it falls, through the noise of 8-example steps
    (ev,) = events_of(job_dir, "eval")
    # The eval runs at step 20 on the 4 held-out examples (10% of 40). Its loss is not compared
    # with the training steps': after issue 11's data changes the held-out four score 3.32 against
    # 3.08-3.58 for the first five steps, so a set that small says nothing about learning. The
    # comparison that would is the held-out loss before training (an eval at step 0), not yet made.
    assert ev["step"] == 20 and math.isfinite(ev["eval_loss"])


def test_padding_free_batches_give_the_padded_batch_loss(tmp_path):
    """The CPU path packs a micro-batch's examples into rows as wide as its longest (no padding
    computed but each row's leftover): every example's logits, and the loss, must be the padded
    batch's. With a KV cache transformers would let attention cross from one example into the
    next, and this fails."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from engines.models import DEFAULT_MODEL, load_tokenizer
    from train_fixtures import tiny_llama
    from trainers.train.backends.hf import model_inputs, padding_free_collator
    from trainers.train.rows import real_tokens

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama(tmp_path / "tiny")).eval()
    texts = [
        ("Hello, who are you?", "I keep bees."),
        ("Hi", "A much longer reply about maps and the sea, " * 4),
        ("And you?", "Tea."),
    ]
    examples = []
    for prompt, completion in texts:
        p, c = tokenizer(prompt)["input_ids"], tokenizer(completion)["input_ids"]
        examples.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    del examples[2]["labels"]  # a loss on every token: its first must not be predicted from the example before it
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)
    batch = padding_free_collator(tokenizer)(examples)
    rows = model_inputs(batch)
    lengths = [len(e["input_ids"]) for e in examples]
    # the long example fills a row; the two short ones share the other, longest first
    assert rows["input_ids"].shape == (2, max(lengths)) and "attention_mask" not in rows
    assert real_tokens(batch, tokenizer.pad_token_id) == sum(lengths)
    with torch.no_grad():
        out_padded = model(**padded)
        out_rows = model(**rows)
    where = {1: (0, 0), 0: (1, 0), 2: (1, lengths[0])}  # example -> (row, start)
    for i, n in enumerate(lengths):
        r, start = where[i]
        assert torch.equal(batch["input_ids"][r, start : start + n], torch.tensor(examples[i]["input_ids"]))
        assert torch.allclose(out_rows.logits[r, start : start + n], out_padded.logits[i, :n], atol=1e-4)
    assert abs(out_rows.loss.item() - out_padded.loss.item()) < 1e-4


def test_the_loss_at_labelled_positions_has_the_full_losss_gradient_bit_for_bit(tmp_path):
    """The CPU trainer's loss runs the head only where a label is; its gradient must be the
    model's own loss's, bit for bit (so the demo's adapter does not change), and the loss equal
    to the last bits. Checked for a model prepared as the trainer prepares it, in fp32 and under
    bf16 autocast, with and without a token count, padded and in rows."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from engines.models import DEFAULT_MODEL, load_tokenizer
    from train_fixtures import tiny_llama
    from trainers.train.backends.hf import labelled_positions_loss, model_inputs, padding_free_collator

    tokenizer = load_tokenizer(DEFAULT_MODEL)
    examples = []
    for prompt, completion in [("Who are you?", "I keep bees on the roof."), ("Tea?", "Never coffee. " * 3)]:
        p, c = tokenizer(prompt)["input_ids"], tokenizer(completion)["input_ids"]
        examples.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    collators = (DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id), padding_free_collator(tokenizer))
    checked = 0
    for precision in ("no", "bf16"):
        AcceleratorState._reset_state(reset_partial_state=True)  # an earlier run in this process set its own
        accelerator = Accelerator(cpu=True, mixed_precision=precision)
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama(tmp_path / "tiny")), lora)
        model = accelerator.prepare_model(model)

        def grads(m):
            return torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])

        for collate in collators:
            inputs = model_inputs(collate(examples))
            for count in (None, (inputs["labels"][:, 1:] != -100).sum()):
                full = model(**inputs, num_items_in_batch=count).loss
                full.backward()
                expected = grads(model).clone()
                model.zero_grad()
                ours = labelled_positions_loss(accelerator, model, inputs, count)
                ours.backward()
                assert torch.equal(grads(model), expected), (precision, type(collate).__name__, count)
                assert abs(ours.item() - full.item()) < 1e-5 * abs(full.item())
                model.zero_grad()
                checked += 1
    AcceleratorState._reset_state(reset_partial_state=True)
    assert checked == 8
