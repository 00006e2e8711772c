"""The transformers engine on the bundled model (dequantised GGUF, cached) and with a PEFT adapter."""

from __future__ import annotations

import math
import time

import pytest

from engines import Engine, EngineError, open_engine
from sessions.model import EngineSpec

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def engine():
    e = open_engine(EngineSpec(id="hf", kind="transformers", n_ctx=512))
    yield e
    e.close()


@pytest.fixture(scope="module")
def llama():
    e = open_engine(EngineSpec(id="llama", kind="llamacpp", n_ctx=512))
    yield e
    e.close()


def test_chat_greedy_is_deterministic_and_streaming_joins_to_it(engine):
    assert isinstance(engine, Engine)
    a = engine.chat(QUESTION, temperature=0, max_tokens=24)
    assert "Paris" in a
    assert engine.chat(QUESTION, temperature=0, max_tokens=24) == a
    pieces = list(engine.stream_chat(QUESTION, temperature=0, max_tokens=24))
    assert len(pieces) > 3 and "".join(pieces) == a


def test_sampling_seed_and_stop(engine):
    kw = {"temperature": 1.0, "max_tokens": 8}
    assert engine.chat(QUESTION, seed=11, **kw) == engine.chat(QUESTION, seed=11, **kw)
    assert len({engine.chat(QUESTION, seed=s, **kw) for s in range(3)}) > 1
    full = engine.complete(PROMPT, temperature=0, max_tokens=12)
    assert full.startswith(" Paris.")
    assert engine.complete(PROMPT, temperature=0, max_tokens=12, stop=["."]) == " Paris"
    streamed = "".join(engine.stream_chat(QUESTION, temperature=0, max_tokens=24, stop=["Paris"]))
    assert streamed == engine.chat(QUESTION, temperature=0, max_tokens=24, stop=["Paris"])
    assert "Paris" not in streamed


def test_a_reader_that_stops_early_stops_generation(engine):
    stream = engine.stream_chat(QUESTION, temperature=1.0, seed=1, max_tokens=2000)
    next(stream)
    t = time.monotonic()
    stream.close()  # the chat pane's stop button
    # 2000 tokens would take minutes on this model; stopping is near-instant (30 s: a busy machine).
    assert time.monotonic() - t < 30
    assert engine.chat(QUESTION, temperature=0, max_tokens=4)  # still usable


def test_logprobs_are_finite_match_a_forward_pass_and_rank_like_llamacpp(engine, llama):
    import torch

    cont = " Paris, the city of light."
    got = engine.logprobs(PROMPT, cont)
    tok = engine.tokenizer
    p, full = tok(PROMPT)["input_ids"], tok(PROMPT + cont)["input_ids"]
    assert full[: len(p)] == p and len(got) == len(full) - len(p)
    with torch.no_grad():
        logits = engine.model(torch.tensor([full])).logits[0].double()
    want = [torch.log_softmax(logits[i - 1], -1)[full[i]].item() for i in range(len(p), len(full))]
    assert got == pytest.approx(want, abs=1e-5)
    assert all(math.isfinite(x) and x <= 0 for x in got)
    # Same weights (Q4_1 in llama.cpp, dequantised here): close, and the same ranking.
    assert got == pytest.approx(llama.logprobs(PROMPT, cont), abs=0.5)
    hf_rank = sum(engine.logprobs(PROMPT, " Paris")) > sum(engine.logprobs(PROMPT, " a banana"))
    ll_rank = sum(llama.logprobs(PROMPT, " Paris")) > sum(llama.logprobs(PROMPT, " a banana"))
    assert hf_rank and ll_rank


def test_peft_adapter_changes_the_model(engine, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from engines.models import load_hf_model

    base = load_hf_model("bundled:smollm2-135m-instruct")
    torch.manual_seed(0)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    tuned = open_engine(EngineSpec(id="tuned", kind="transformers", adapter=str(tmp_path / "adapter")))
    try:
        base_lp = engine.logprobs(PROMPT, " Paris")
        tuned_lp = tuned.logprobs(PROMPT, " Paris")
        assert math.isfinite(tuned_lp[0]) and abs(tuned_lp[0] - base_lp[0]) > 1e-3
    finally:
        tuned.close()
    with pytest.raises(EngineError, match="not a PEFT adapter folder"):
        open_engine(EngineSpec(id="t2", kind="transformers", adapter=str(tmp_path)))


def test_bad_dtype_is_one_sentence():
    with pytest.raises(EngineError, match="dtype 'float99' is not a floating-point torch dtype"):
        open_engine(EngineSpec(id="x", kind="transformers", extra={"dtype": "float99"}))
