"""The model's own chat template and stop tokens, for tokenizers in the style of the Llama-3 and
Qwen families that the tests write (a real tokenizer.json and a tokenizer_config.json with the
chat template and the special tokens, loaded through AutoTokenizer as any model folder is):

- the Modelfile's TEMPLATE, rendered by Go's text/template, equals the Jinja template's text and
  its `PARAMETER stop` lines are the tokens that end a turn;
- the transformers engine ends a reply at those tokens, also where eos is the base model's
  end-of-text token that a chat turn never writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_modelfile import CONVERSATION, go_render  # noqa: F401 - the Go renderer fixture

from engines.models import chat_stop_tokens
from trainers.export.modelfile import go_template, measure_frame, parse_template, render_modelfile, stop_tokens

# Llama 3.1's template, trimmed of tool calling: a system block always, with its dates.
LLAMA31 = (
    '{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}'
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    '{%- set messages = messages[1:] %}{%- else %}{%- set system_message = "" %}{%- endif %}'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}{{- "Cutting Knowledge Date: December 2023\\n" }}'
    '{{- "Today Date: " + date_string + "\\n\\n" }}{{- system_message }}{{- "<|eot_id|>" }}'
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# Qwen 2.5's template without tools: a default system prompt when none is given.
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    '{%- endif %}{%- for message in messages %}{%- if (message.role == "user") or (message.role == "system" and not '
    "loop.first) or (message.role == \"assistant\") %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
    "'<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
FAMILIES = {
    # name: (template, special tokens in id order, bos, eos)
    "llama3-instruct": (
        LLAMA31,
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    # The base model's tokenizer: eos is <|end_of_text|>, which no chat turn writes.
    "llama3-base": (
        LLAMA31,
        ["<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"],
        "<|begin_of_text|>",
        "<|end_of_text|>",
    ),
    "qwen2.5-instruct": (QWEN25, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
    "qwen2.5-base": (QWEN25, ["<|im_end|>", "<|endoftext|>", "<|im_start|>"], None, "<|endoftext|>"),
}
STOPS = {
    "llama3-instruct": ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
    "llama3-base": ["<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
    "qwen2.5-instruct": ["<|im_end|>", "<|im_start|>"],
    "qwen2.5-base": ["<|endoftext|>", "<|im_end|>", "<|im_start|>"],
}


def write_tokenizer(folder: Path, family: str) -> Path:
    """A word-level tokenizer.json with the family's special tokens first, and its tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    template, specials, bos, eos = FAMILIES[family]
    words = sorted({w for m in CONVERSATION for w in m["content"].split()} | {"You", "are", "Ada", "Hello"})
    vocab = {tok: i for i, tok in enumerate([*specials, "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(specials)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    added = {
        str(vocab[s]): {
            "content": s,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for s in specials
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": "<unk>",
        "pad_token": eos,
        "model_max_length": 4096,
        "added_tokens_decoder": added,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return folder


@pytest.fixture(params=list(FAMILIES))
def family(request, tmp_path):
    from transformers import AutoTokenizer

    folder = write_tokenizer(tmp_path / request.param, request.param)
    return request.param, AutoTokenizer.from_pretrained(str(folder)), folder


def test_the_tokenizer_folders_are_what_the_families_ship(family):
    name, tok, _ = family
    text = tok.apply_chat_template(CONVERSATION[:1], tokenize=False, add_generation_prompt=True)
    if name.startswith("llama3"):
        assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
        assert text.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    else:
        assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
        assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == FAMILIES[name][3]


def test_modelfile_template_and_stops_follow_the_models_own_template(family, go_render):  # noqa: F811
    name, tok, _ = family
    text = render_modelfile("model-q8_0.gguf", tok, system="You are Ada.")
    stops = [json.loads(line.split(" ", 2)[2]) for line in text.splitlines() if line.startswith("PARAMETER stop ")]
    assert stops == STOPS[name]
    template = parse_template(text)
    with_system = [{"role": "system", "content": "You are Ada."}, *CONVERSATION]
    for conversation in (with_system, CONVERSATION, CONVERSATION[:1]):
        want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert go_render(template, conversation) == want, name
    assert stop_tokens(tok, measure_frame(tok)) == chat_stop_tokens(tok) == STOPS[name]
    assert go_template(measure_frame(tok)) == template


def test_the_transformers_engine_ends_a_reply_at_the_turns_end(tmp_path):
    """A tiny Llama whose every logit is equal always picks token 0, <|eot_id|> in the Llama-3 base
    tokenizer, whose eos is <|end_of_text|>: the reply must end after that one token instead of
    filling max_tokens with end-of-turn tokens."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engines.hf import TransformersEngine
    from sessions.model import EngineSpec

    folder = write_tokenizer(tmp_path / "llama3-base", "llama3-base")
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.convert_tokens_to_ids("<|eot_id|>") == 0 and tok.eos_token == "<|end_of_text|>"
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(folder)

    engine = TransformersEngine(EngineSpec(id="t", kind="transformers", model=str(folder)))
    assert [tok.convert_ids_to_tokens(i) for i in engine.stop_ids] == STOPS["llama3-base"]
    lengths = []
    generate = engine.model.generate

    def counting(**kw):
        out = generate(**kw)
        lengths.append(out.shape[1] - kw["input_ids"].shape[1])
        return out

    engine.model.generate = counting
    assert engine.chat(CONVERSATION[:1], max_tokens=8, temperature=0.0) == ""
    assert lengths == [1]
