"""`persona-tui chat` and `persona-tui serve` driven as a person would: subprocesses, stdin, HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export_fixtures import BASE, build_shared_export, make_session
from persona_tui.conversation import ChatLog, EngineRefError, build_messages, engine_from_ref
from sessions.model import EngineSpec

CLI = [sys.executable, "-m", "persona_tui.cli"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return build_shared_export(tmp_path_factory.getbasetemp())


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")


# ----------------------------------------------------------------------------- engine references


def test_engine_references_parse(tmp_path):
    sf = make_session(tmp_path)
    sf.session.engines.append(EngineSpec(id="mine", kind="openai", base_url="http://x/v1"))
    s, ws = sf.session, sf.workspace
    assert engine_from_ref("mine", s, ws).base_url == "http://x/v1"
    b = engine_from_ref(BASE)
    assert (b.kind, b.model) == ("llamacpp", BASE)
    g = engine_from_ref("gguf:/m/model.gguf+lora:/m/a.gguf")
    assert (g.kind, g.model, g.adapter) == ("llamacpp", "/m/model.gguf", "/m/a.gguf")
    h = engine_from_ref("hf:bundled:smollm2-135m-instruct+adapter:/runs/adapter")
    assert (h.kind, h.model, h.adapter) == ("transformers", BASE, "/runs/adapter")
    o = engine_from_ref("openai:http://127.0.0.1:9/v1#my-model")
    assert (o.kind, o.base_url, o.model) == ("openai", "http://127.0.0.1:9/v1", "my-model")
    with pytest.raises(EngineRefError, match="not one of the session's engines"):
        engine_from_ref("nope", s, ws)
    with pytest.raises(EngineRefError, match="has no training job"):
        engine_from_ref("run:r1", s, ws)
    with pytest.raises(EngineRefError, match="no finished export"):
        engine_from_ref("export:export-1", s, ws)


def test_messages_and_history_file(tmp_path):
    msgs = build_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "c", "sys")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert build_messages([], "hi")[0] == {"role": "user", "content": "hi"}
    log = ChatLog(tmp_path, "c1")
    log.append(role="user", content="hi")
    log.append(role="assistant", content="hello", stopped=True)
    assert log.path == tmp_path / "chats" / "c1.jsonl"
    assert [r["content"] for r in log.records()] == ["hi", "hello"] and log.records()[1]["stopped"] is True


@pytest.mark.slow
def test_export_engines_resolve_to_the_exported_files(shared):
    from sessions.store import SessionFile

    sf = SessionFile.load(shared.session)
    job = shared.export_job.name
    assert engine_from_ref(f"export:{job}", sf.session, sf.workspace).model.endswith("model-q8_0.gguf")
    assert engine_from_ref(f"export:{job}:f16", sf.session, sf.workspace).model.endswith("model-f16.gguf")
    lora = engine_from_ref(f"export:{job}:lora", sf.session, sf.workspace)
    assert lora.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and lora.adapter.endswith("adapter-f16.gguf")
    with pytest.raises(EngineRefError, match="has no q5_k_m GGUF"):
        engine_from_ref(f"export:{job}:q5_k_m", sf.session, sf.workspace)
    run = engine_from_ref("run:r1", sf.session, sf.workspace)
    assert (run.kind, run.model) == ("transformers", BASE) and run.adapter.endswith("adapter")


# ----------------------------------------------------------------------------- chat


@pytest.mark.slow
def test_chat_streams_replies_from_stdin_and_keeps_history(shared):
    proc = subprocess.run(
        [
            *CLI,
            "chat",
            str(shared.session),
            "--engine",
            f"export:{shared.export_job.name}:q8_0",
            "--persona",
            "ada",
            "--temperature",
            "0",
            "--max-tokens",
            "12",
            "--chat-id",
            "cli-test",
        ],
        input="Hello, who are you?\n/persona off\nAnd what do you do?\n/quit\nnot sent\n",
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    replies = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(replies) == 2, proc.stdout
    assert "persona in the system prompt: off" in proc.stderr
    records = [json.loads(line) for line in (shared.workspace / "chats" / "cli-test.jsonl").read_text().splitlines()]
    assert [r["role"] for r in records] == ["user", "assistant", "user", "assistant"]
    assert records[0]["persona_on"] is True and records[2]["persona_on"] is False
    assert records[1]["content"].strip() == replies[0].strip()
    assert all("not sent" != r["content"] for r in records)


@pytest.mark.slow
def test_ctrl_c_stops_a_reply_and_the_chat_goes_on(tmp_path):
    sf = make_session(tmp_path)
    proc = subprocess.Popen(
        [*CLI, "chat", str(sf.path), "--engine", BASE, "--temperature", "0", "--max-tokens", "1500", "--chat-id", "c"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        bufsize=0,
        # Started as a background job of a script or CI runner is: with SIGINT ignored, which
        # the child inherits. Ctrl-C must still stop the reply.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        proc.stdin.write("Count from 1 to 300, separated by commas.\n")
        proc.stdin.flush()
        got = ""
        while len(got) < 20:  # some of the reply has streamed out
            char = proc.stdout.read(1)
            assert char, f"the chat ended before replying: {proc.stderr.read()}"
            got += char
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate("/quit\n", timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "(stopped)" in err
    records = [json.loads(line) for line in (sf.workspace / "chats" / "c.jsonl").read_text().splitlines()]
    assert records[-1]["role"] == "assistant" and records[-1]["stopped"] is True
    assert records[-1]["content"].startswith(got.strip()[:10]) and len(records[-1]["content"]) < 1200


def test_chat_refuses_an_unknown_engine_in_one_sentence(tmp_path):
    sf = make_session(tmp_path)
    proc = subprocess.run(
        [*CLI, "chat", str(sf.path), "--engine", "warp:drive"],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("persona-tui: engine 'warp:drive' is not")
    assert len(proc.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- serve


def _start_serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*CLI, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    url, deadline = "", time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("http://"):
            url = line.strip()
        if line.strip() == "ready":
            return proc, url
    proc.kill()
    raise AssertionError(f"serve did not become ready (url {url!r}, exit {proc.poll()})")


@pytest.mark.slow
def test_openai_client_streams_from_serve_and_chat_uses_it(shared):
    import openai

    proc, url = _start_serve([str(shared.session), "--export", shared.export_job.name, "--port", "0"])
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = openai.OpenAI(base_url=url, api_key="sk-no-key")
        models = [m.id for m in client.models.list().data]
        assert models == [f"{shared.export_job.name}-model-q8_0"]
        stream = client.chat.completions.create(
            model=models[0],
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) >= 2 and "".join(pieces).strip()
        # The terminal chat talks to the same server through the openai engine.
        chat = subprocess.run(
            [
                *CLI,
                "chat",
                str(shared.session),
                "--engine",
                f"openai:{url}#{models[0]}",
                "--temperature",
                "0",
                "--max-tokens",
                "8",
            ],
            input="Hi!\n",
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
        )
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip()
        client.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    import urllib.request

    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=2)


def test_serve_refuses_a_missing_export(tmp_path):
    sf = make_session(tmp_path)
    proc = subprocess.run(
        [*CLI, "serve", str(sf.path), "--export", "export-nope"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == 2 and "no finished export" in proc.stderr
    assert not Path(tmp_path / "s" / "jobs").exists()
