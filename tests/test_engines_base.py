"""The engine interface's pure parts: sampling settings, stop strings, dispatch, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engines import EngineError, open_engine
from engines.base import Sampling, StopStream, check_messages, cut_at_stop
from sessions.model import EngineSpec


def test_sampling_defaults_and_validation():
    s = Sampling.from_kwargs({})
    assert (s.max_tokens, s.temperature, s.top_p, s.seed, s.stop) == (256, 0.7, 0.95, None, ())
    s = Sampling.from_kwargs({"temperature": 0, "stop": "\n", "seed": 3, "max_tokens": 5})
    assert s.greedy and s.stop == ("\n",) and s.seed == 3 and s.max_tokens == 5
    assert Sampling.from_kwargs({"stop": None, "top_p": None}).top_p == 0.95
    with pytest.raises(EngineError, match="unknown sampling setting 'top_k'"):
        Sampling.from_kwargs({"top_k": 3})
    for bad, match in (
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"temperature": -1}, "temperature"),
    ):
        with pytest.raises(EngineError, match=match):
            Sampling.from_kwargs(bad)


def test_messages_are_checked():
    assert check_messages([{"role": "user", "content": "hi", "name": "x"}]) == [{"role": "user", "content": "hi"}]
    with pytest.raises(EngineError, match="message 1 has role 'bot'"):
        check_messages([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])
    with pytest.raises(EngineError, match="no text content"):
        check_messages([{"role": "user"}])
    with pytest.raises(EngineError, match="at least one message"):
        check_messages([])


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("abc END def STOP", ["STOP", "END"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)


@pytest.mark.parametrize(
    "pieces",
    [["Hel", "lo wor", "ld<", "|end|> more"], ["Hello world", "<|end|>"], list("Hello world<|end|>tail")],
)
def test_stop_stream_never_leaks_a_stop_string_split_across_pieces(pieces):
    st = StopStream(["<|end|>"])
    out = "".join(st.feed(p) for p in pieces) + st.flush()
    assert out == "Hello world" and st.stopped


def test_stop_stream_releases_held_back_text_that_was_not_a_stop():
    st = StopStream(["<|end|>"])
    assert st.feed("a <") == "a "  # "<" could start the stop string: held back
    assert st.feed("b") == "<b"
    assert st.feed("<|en") == ""
    assert st.flush() == "<|en" and not st.stopped


def test_unknown_engine_kind_is_one_sentence():
    with pytest.raises(EngineError, match="engine 'e1' has kind 'vllm'; use one of: llamacpp, transformers, openai"):
        open_engine(EngineSpec(id="e1", kind="vllm"))


def test_importing_engines_loads_no_ml_library_and_no_ui():
    code = (
        "import sys, json, engines, engines.base, engines.models;"
        "print(json.dumps(sorted(m for m in ('torch','transformers','llama_cpp','openai','textual','persona_tui') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
