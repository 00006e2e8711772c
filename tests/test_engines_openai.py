"""The OpenAI-compatible engine against llama-cpp-python's real server serving the bundled model."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

import pytest

from engines import Engine, EngineError, EngineUnsupported, open_engine
from engines.models import resolve_model
from sessions.model import EngineSpec

pytestmark = pytest.mark.slow

KEY_ENV = "PERSONA_TUI_TEST_SERVER_KEY"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CHAT_PROMPT = "<|im_start|>user\nIs Paris in France?<|im_end|>\n<|im_start|>assistant\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path_factory, *extra: str, key: str | None = None):
    """Start `python -m llama_cpp.server` on a free port; return (process, base_url, log path)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(resolve_model("bundled:smollm2-135m-instruct").path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        *extra,
    ]
    if key:
        args += ["--api_key", key]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while True:
        req = urllib.request.Request(base + "/models", headers={"Authorization": f"Bearer {key}"} if key else {})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return proc, base, log
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key = "sk-test-" + secrets.token_hex(16)
    proc, base, _ = _serve(tmp_path_factory, key=key)
    yield base, key
    _stop(proc)


@pytest.fixture
def engine(server, monkeypatch):
    base, key = server
    monkeypatch.setenv(KEY_ENV, key)
    e = open_engine(EngineSpec(id="srv", kind="openai", base_url=base, api_key_env=KEY_ENV))
    yield e
    e.close()


@pytest.fixture(scope="module")
def llama():
    e = open_engine(EngineSpec(id="llama", kind="llamacpp", n_ctx=1024))
    yield e
    e.close()


def test_lists_models_and_uses_the_first_when_none_is_named(engine):
    assert isinstance(engine, Engine)
    models = engine.list_models()
    assert models == [str(resolve_model("bundled:smollm2-135m-instruct").path)]
    assert engine.model == models[0]


def test_chat_and_streaming_agree(engine):
    whole = engine.chat(QUESTION, temperature=0, max_tokens=24)
    pieces = list(engine.stream_chat(QUESTION, temperature=0, max_tokens=24))
    assert whole.strip() and len(pieces) > 3 and "".join(pieces) == whole
    assert engine.chat(QUESTION, temperature=0.9, seed=5, max_tokens=16) == engine.chat(
        QUESTION, temperature=0.9, seed=5, max_tokens=16
    )


def test_completion_and_stop(engine):
    assert engine.complete("The capital of France is", temperature=0, max_tokens=12).startswith(" Paris.")
    assert engine.complete("The capital of France is", temperature=0, max_tokens=12, stop=["."]) == " Paris"


def test_logprobs_of_a_bos_led_prompt_match_the_llamacpp_engine(engine, llama):
    # SmolLM2's BOS is <|im_start|>, so a chat-formatted prompt is one the server scores right.
    # (The server may reuse its cached prompt and decode the last prompt token alone, so the
    # first position can differ by a few hundredths; the rest agree to 1e-6.)
    got = engine.logprobs(CHAT_PROMPT, "Yes, it is.")
    want = llama.logprobs(CHAT_PROMPT, "Yes, it is.")
    assert len(got) == len(want) == 5
    assert got == pytest.approx(want, abs=5e-2) and got[1:] == pytest.approx(want[1:], abs=1e-3)


def test_shifted_server_logprobs_are_refused_not_returned(engine):
    # The truth about llama-cpp-python 0.3.x's server: for a prompt that does not start with the
    # BOS token, echoed log-probabilities are off by one token. The engine must say so.
    with pytest.raises(EngineUnsupported, match="shifted by one token") as err:
        engine.logprobs("The capital of France is", " Paris")
    assert engine.base_url in str(err.value)


def test_server_without_logits_reports_unsupported(tmp_path_factory):
    proc, base, _ = _serve(tmp_path_factory, "--logits_all", "False")
    try:
        e = open_engine(EngineSpec(id="nolog", kind="openai", base_url=base))
        with pytest.raises(EngineUnsupported, match=f"the endpoint at {base} does not give log-probabilities"):
            e.logprobs(CHAT_PROMPT, "Yes")
        assert e.chat(QUESTION, temperature=0, max_tokens=4)  # everything else still works
    finally:
        _stop(proc)


def test_unreachable_endpoint_is_one_sentence_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    e = open_engine(EngineSpec(id="gone", kind="openai", base_url=url, extra={"max_retries": 0}))
    with pytest.raises(EngineError, match=f"cannot reach the OpenAI-compatible endpoint at {url}"):
        e.chat(QUESTION)
    with pytest.raises(EngineError, match=f"cannot reach the OpenAI-compatible endpoint at {url}"):
        e.stream_chat(QUESTION)
    with pytest.raises(EngineError, match="has no base_url"):
        open_engine(EngineSpec(id="nourl", kind="openai"))


def test_api_key_comes_from_the_environment_and_never_shows(server, monkeypatch):
    base, key = server
    monkeypatch.delenv(KEY_ENV, raising=False)
    no_key = open_engine(EngineSpec(id="srv", kind="openai", base_url=base, api_key_env=KEY_ENV))
    with pytest.raises(EngineError, match=f"refused the API key.*{KEY_ENV}"):
        no_key.list_models()

    wrong = "sk-wrong-" + secrets.token_hex(8)
    monkeypatch.setenv(KEY_ENV, wrong)
    e = open_engine(EngineSpec(id="srv", kind="openai", base_url=base, api_key_env=KEY_ENV))
    for call in (e.list_models, lambda: e.chat(QUESTION, max_tokens=2), lambda: e.logprobs(CHAT_PROMPT, "Yes")):
        with pytest.raises(EngineError) as err:
            call()
        shown = "".join(traceback.format_exception(err.value))
        assert wrong not in shown and key not in shown
        assert KEY_ENV in str(err.value)

    monkeypatch.setenv(KEY_ENV, key)
    ok = open_engine(EngineSpec(id="srv", kind="openai", base_url=base, api_key_env=KEY_ENV))
    assert ok.list_models()
    assert key not in repr(ok.spec)


def test_llama_servers_schema_shape_constrains_and_openais_is_refused(engine):
    """llama-cpp-python's server reads {"type": "json_object", "schema": …} (a grammar) and refuses
    OpenAI's json_schema shape (a 500 "validation error", not a failing server): the judge moves to
    the shape it knows, and the teacher says which setting to change."""
    from engines.openai_compat import EndpointError
    from evaluators.judge import SCHEMAS, Judge

    with pytest.raises(EndpointError) as err:
        engine.chat_reply(QUESTION, schema=SCHEMAS["verdict"], response_format="json_schema", max_tokens=16)
    assert err.value.rejected and not err.value.retryable and "validation error" in str(err.value)
    for i in range(2):
        out = engine.chat_reply(
            QUESTION, schema=SCHEMAS["verdict"], response_format="llama_schema", max_tokens=16, temperature=0.7, seed=i
        )
        assert json.loads(out["text"])["verdict"] in ("A", "B", "tie")
        assert out["prompt_tokens"] > 0 and out["completion_tokens"] > 0
    judge = Judge(engine, "llama-server", max_tokens=16)
    call = judge.compare("quality", "What is two plus two?", "Four.", "Blue.")
    assert call.constrained and call.answer in ("A", "B", "tie") and judge.stats["schema_refused"] == 1
