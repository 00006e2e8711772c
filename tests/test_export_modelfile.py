"""The Modelfile's TEMPLATE, rendered by Go's own text/template, equals the tokenizer's chat
template text for the same conversation (the way Ollama would build the prompt)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from export_fixtures import BASE, build_shared_export
from trainers.export import ExportError
from trainers.export.modelfile import go_template, measure_frame, parse_template, render_modelfile, stop_tokens

# The data Ollama hands a template that uses .Messages (template.Execute in ollama/template).
RENDER_GO = r"""
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Values struct {
	System   string
	Messages []Message
	Response string
}

func main() {
	tmpl, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var v Values
	if err := json.Unmarshal(raw, &v.Messages); err != nil {
		panic(err)
	}
	t := template.Must(template.New("ollama").Parse(string(tmpl)))
	if err := t.Execute(os.Stdout, v); err != nil {
		panic(err)
	}
}
"""

CONVERSATION = [
    {"role": "user", "content": "Do you keep bees?"},
    {"role": "assistant", "content": "Three hives, {{ and }} a lot of honey."},
    {"role": "user", "content": "Tell me about\nyour morning."},
]


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    """A compiled Go program: render(template_text, messages) -> text."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (scripts/setup --dev, as root, installs Debian's golang-go)")
    folder = tmp_path_factory.mktemp("go")
    (folder / "render.go").write_text(RENDER_GO)
    env = {
        "GOCACHE": str(folder / "cache"),
        "GOPATH": str(folder / "gopath"),
        "GO111MODULE": "off",
        "HOME": str(folder),
        "PATH": "/usr/bin:/bin:/usr/local/bin:/usr/local/go/bin",
    }
    subprocess.run(
        ["go", "build", "-o", str(folder / "render"), str(folder / "render.go")],
        check=True,
        env=env,
        cwd=folder,
        capture_output=True,
        timeout=300,
    )
    counter = iter(range(10**6))

    def render(template: str, messages: list[dict[str, str]]) -> str:
        n = next(counter)
        (folder / f"t{n}.tmpl").write_text(template)
        (folder / f"m{n}.json").write_text(json.dumps(messages))
        proc = subprocess.run(
            [str(folder / "render"), str(folder / f"t{n}.tmpl"), str(folder / f"m{n}.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return render


@pytest.fixture(scope="module")
def base_tokenizer():
    from engines.models import load_tokenizer

    return load_tokenizer(BASE)


class WithTemplate:
    """A tokenizer with another chat template (the bundled one stands in for other models)."""

    def __init__(self, tokenizer, template: str) -> None:
        self._tok, self.chat_template = tokenizer, template

    def apply_chat_template(self, messages, **kw):
        return self._tok.apply_chat_template(messages, chat_template=self.chat_template, **kw)

    def __getattr__(self, name):
        return getattr(self._tok, name)


LLAMA3 = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Folds the system prompt into the first user turn: not a per-message frame.
MISTRAL_LIKE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{% if loop.index0 == 1 and "
    "messages[0]['role'] == 'system' %}[INST] {{ messages[0]['content'] }}\n\n{{ m['content'] }} [/INST]"
    "{% else %}[INST] {{ m['content'] }} [/INST]{% endif %}{% elif m['role'] == 'assistant' %}"
    "{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
NO_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.mark.slow
def test_exported_modelfile_renders_like_the_trained_template(tmp_path_factory, go_render):
    from transformers import AutoTokenizer

    shared = build_shared_export(tmp_path_factory.getbasetemp())
    tokenizer = AutoTokenizer.from_pretrained(str(shared.out / "merged"))
    text = (shared.out / "model-q8_0.Modelfile").read_text()
    assert text.splitlines()[1] == "FROM ./model-q8_0.gguf"
    system = text[text.index('SYSTEM """') + len('SYSTEM """') : text.rindex('"""')]
    assert system.startswith("You are Ada. A beekeeper from Lisbon")
    template = parse_template(text)
    # Ollama puts the Modelfile's SYSTEM first when the request has none.
    with_system = [{"role": "system", "content": system}, *CONVERSATION]
    for conversation in (with_system, CONVERSATION, CONVERSATION[:1]):
        want = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert go_render(template, conversation) == want


def test_other_chat_templates_translate_exactly(base_tokenizer, go_render):
    for template in (LLAMA3, ZEPHYR):
        tok = WithTemplate(base_tokenizer, template)
        go = go_template(measure_frame(tok))
        for conversation in ([{"role": "system", "content": "Be brief."}, *CONVERSATION], CONVERSATION):
            want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            assert go_render(go, conversation) == want, template


def test_bundled_template_keeps_its_default_system_prompt(base_tokenizer, go_render):
    go = go_template(measure_frame(base_tokenizer))
    out = go_render(go, [{"role": "user", "content": "Hi"}])
    assert out.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert out.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_stop_tokens_and_modelfile_shape(base_tokenizer):
    frame = measure_frame(base_tokenizer)
    assert stop_tokens(base_tokenizer, frame) == ["<|im_end|>", "<|im_start|>"]
    text = render_modelfile("/abs/base.gguf", base_tokenizer, adapter_name="adapter-f16.gguf", comment="made by a test")
    lines = text.splitlines()
    assert lines[0] == "# made by a test"
    assert lines[1:3] == ["FROM /abs/base.gguf", "ADAPTER ./adapter-f16.gguf"]
    assert "SYSTEM" not in text
    with pytest.raises(ExportError, match='contains """'):
        render_modelfile("m.gguf", base_tokenizer, system='say """ hi')


def test_untranslatable_templates_are_refused_with_a_sentence(base_tokenizer):
    with pytest.raises(ExportError, match="cannot"):
        measure_frame(WithTemplate(base_tokenizer, MISTRAL_LIKE))
    with pytest.raises(ExportError, match="System role not supported"):
        measure_frame(WithTemplate(base_tokenizer, NO_SYSTEM))
