"""The llama.cpp engine on the bundled GGUF: chat, streaming, completion, log-probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines import Engine, EngineError, open_engine
from engines.models import resolve_model
from sessions.model import EngineSpec

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def engine():
    e = open_engine(EngineSpec(id="llama", kind="llamacpp", n_ctx=512))
    yield e
    e.close()


def test_chat_uses_the_gguf_template_and_is_deterministic_when_greedy(engine):
    assert isinstance(engine, Engine)
    assert engine.llm.chat_format == "chat_template.default"  # the GGUF's own template
    a = engine.chat(QUESTION, temperature=0, max_tokens=24)
    b = engine.chat(QUESTION, temperature=0, max_tokens=24)
    assert a.strip() and a == b


def test_streaming_joins_to_the_same_text_as_one_reply(engine):
    whole = engine.chat(QUESTION, temperature=0, max_tokens=32)
    pieces = list(engine.stream_chat(QUESTION, temperature=0, max_tokens=32))
    assert len(pieces) > 3
    assert "".join(pieces) == whole


def test_sampling_with_a_seed_repeats_and_seeds_differ(engine):
    kw = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 12}
    assert engine.chat(QUESTION, seed=7, **kw) == engine.chat(QUESTION, seed=7, **kw)
    replies = {engine.chat(QUESTION, seed=s, **kw) for s in range(3)}
    assert len(replies) > 1


def test_the_engine_seed_is_the_default_for_requests_without_one():
    story = [{"role": "user", "content": "Tell me a story"}]

    def sample(seed):
        e = open_engine(EngineSpec(id="s", kind="llamacpp", n_ctx=512, threads=1, seed=seed))
        try:
            return e.chat(story, max_tokens=16, temperature=1.0)
        finally:
            e.close()

    first = sample(42)
    assert sample(42) == first and sample(7) != first


def test_stop_strings_end_the_reply(engine):
    text = engine.complete(PROMPT, temperature=0, max_tokens=24)
    assert text.startswith(" Paris.")
    assert engine.complete(PROMPT, temperature=0, max_tokens=24, stop=["."]) == " Paris"


def _manual_logprobs(path, prompt, continuation):
    """Token by token with a plain context: the logits of the last position after each prefix."""
    from llama_cpp import Llama
    from llama_cpp import llama_cpp as C

    llm = Llama(model_path=str(path), n_ctx=256, verbose=False)
    p = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    full = llm.tokenize((prompt + continuation).encode(), add_bos=True, special=True)
    assert full[: len(p)] == p
    out = []
    for i in range(len(p), len(full)):
        llm.reset()
        llm.eval(full[:i])
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).astype(np.float64)
        out.append(logits[full[i]] - (logits.max() + math.log(np.exp(logits - logits.max()).sum())))
    llm.close()
    return out


def test_logprobs_match_a_manual_computation(engine):
    path = resolve_model("bundled:smollm2-135m-instruct").path
    cont = " Paris, the city of light."
    got = engine.logprobs(PROMPT, cont)
    want = _manual_logprobs(path, PROMPT, cont)
    assert len(got) == len(want) == len(engine.tokenize(PROMPT + cont)) - len(engine.tokenize(PROMPT))
    assert np.allclose(got, want, atol=2e-3), (got, want)
    assert all(x <= 0 for x in got)


def test_logprobs_rank_a_likely_continuation_above_an_unlikely_one(engine):
    likely = sum(engine.logprobs(PROMPT, " Paris"))
    unlikely = sum(engine.logprobs(PROMPT, " a banana"))
    assert likely > unlikely + 3
    chat_prompt = "<|im_start|>user\nIs Paris in France? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
    assert sum(engine.logprobs(chat_prompt, "Yes")) > sum(engine.logprobs(chat_prompt, "Banana"))


def test_logprobs_reuse_of_an_evaluated_prefix_gives_the_same_numbers(engine):
    first = engine.logprobs(PROMPT, " Paris")
    engine.logprobs(PROMPT + " Paris and", " London")  # shares a prefix, evaluates more
    engine.logprobs("Something else entirely", " here")  # shares nothing
    assert engine.logprobs(PROMPT, " Paris") == pytest.approx(first, abs=1e-6)


def test_logprobs_edge_cases(engine):
    assert engine.logprobs(PROMPT, "") == []
    no_prompt = engine.logprobs("", "Hello world")
    assert len(no_prompt) == 2 and all(math.isfinite(x) for x in no_prompt)
    with pytest.raises(EngineError, match="more than the context of 512"):
        engine.logprobs(PROMPT, " word" * 600)


def test_bad_model_adapter_and_settings_are_one_sentence(tmp_path, engine):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(EngineError, match="llama.cpp needs a GGUF file"):
        open_engine(EngineSpec(id="x", kind="llamacpp", model=str(tmp_path / "hf")))
    with pytest.raises(EngineError, match="is not a .gguf file"):
        open_engine(EngineSpec(id="x", kind="llamacpp", adapter=str(tmp_path / "hf")))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(EngineError, match=f"llama.cpp could not load {broken}"):
        open_engine(EngineSpec(id="x", kind="llamacpp", model=str(broken)))
    with pytest.raises(EngineError, match="unknown sampling setting 'top_k'"):
        engine.chat(QUESTION, top_k=5)
    with pytest.raises(EngineError, match="role 'bot'"):
        engine.stream_chat([{"role": "bot", "content": "hi"}])  # at the call, before any iteration


def test_closing_a_stream_early_frees_the_engine(engine):
    stream = engine.stream_chat(QUESTION, temperature=0, max_tokens=200)
    first = next(stream)
    stream.close()  # the chat pane's stop button
    assert first and engine.chat(QUESTION, temperature=0, max_tokens=24).startswith(first)


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A random (non-zero) PEFT LoRA on the bundled model, and its GGUF by llama.cpp's converter."""
    import os
    import subprocess
    import sys

    import torch
    from peft import LoraConfig, get_peft_model

    from engines.models import converter_dir, hf_model_dir, load_hf_model

    d = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    peft_model = get_peft_model(
        load_hf_model("bundled:smollm2-135m-instruct"),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(d / "adapter")
    conv = converter_dir()
    env = {**os.environ, "PYTHONPATH": str(conv / "gguf-py")}
    subprocess.run(
        [
            sys.executable,
            str(conv / "convert_lora_to_gguf.py"),
            "--base",
            str(hf_model_dir("bundled:smollm2-135m-instruct")),
            "--outfile",
            str(d / "lora.gguf"),
            "--outtype",
            "f16",
            str(d / "adapter"),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return d / "adapter", d / "lora.gguf"


def test_a_lora_gguf_changes_the_model_like_the_peft_adapter_it_came_from(engine, lora):
    adapter, gguf = lora
    tuned = open_engine(EngineSpec(id="tuned", kind="llamacpp", n_ctx=512, adapter=str(gguf)))
    hf_tuned = open_engine(EngineSpec(id="hf-tuned", kind="transformers", adapter=str(adapter)))
    try:
        base_lp = engine.logprobs(PROMPT, " Paris")[0]
        lp = tuned.logprobs(PROMPT, " Paris")[0]  # the scoring context carries the adapter too
        assert abs(lp - base_lp) > 1.0
        assert lp == pytest.approx(hf_tuned.logprobs(PROMPT, " Paris")[0], abs=1.0)
        text = tuned.complete(PROMPT, temperature=0, max_tokens=4)
        assert text != engine.complete(PROMPT, temperature=0, max_tokens=4)
        assert text.split()[0] == hf_tuned.complete(PROMPT, temperature=0, max_tokens=4).split()[0]
    finally:
        tuned.close()
        hf_tuned.close()


def test_gpu_layers_follow_the_build_and_the_override(monkeypatch):
    """A CPU build offloads nothing, a GPU build everything; the variable wins, a bad one is refused."""
    import llama_cpp

    from engines.base import EngineError
    from engines.llamacpp import GPU_LAYERS_ENV, gpu_layers

    monkeypatch.delenv(GPU_LAYERS_ENV, raising=False)
    assert gpu_layers() == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert gpu_layers() == -1
    monkeypatch.setenv(GPU_LAYERS_ENV, "0")
    assert gpu_layers() == 0
    monkeypatch.setenv(GPU_LAYERS_ENV, "all")
    with pytest.raises(EngineError, match=GPU_LAYERS_ENV):
        gpu_layers()
