"""The Chat pane with Pilot: two engines stream side by side with the same seed, a reply is
stopped mid-way, the persona switch reaches the system prompt, history and annotation are kept."""

from __future__ import annotations

import json
import time

import pytest
from export_fixtures import BASE, make_session

from engines.models import resolve_model
from persona_tui.app import make_app
from persona_tui.panes.chat import ChatPane
from sessions.store import SessionFile

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def wait_until(pilot, predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _records(pane: ChatPane) -> list[dict]:
    return [json.loads(line) for line in pane.chat_log.path.read_text().splitlines()]


async def test_stream_side_by_side_stop_midway_and_annotate(tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        pane = app.query_one(ChatPane)
        # The same bundled model twice, as two engines (two llama.cpp instances).
        pane.set_engines(BASE, f"gguf:{resolve_model(BASE).path}")
        pane.query_one("#temperature").value = "0.8"
        pane.query_one("#seed").value = "7"
        pane.query_one("#max-tokens").value = "20"
        await pilot.pause()
        pane.query_one("#chat-input").focus()
        await pilot.press(*"Tell me a joke.", "enter")
        await wait_until(pilot, lambda: pane.busy(), 10, "the replies to start")
        await wait_until(pilot, lambda: not pane.busy(), what="both replies")
        a, b = pane.columns["a"].turns[0], pane.columns["b"].turns[0]
        assert a.state == b.state == "done" and a.reply.strip()
        assert a.reply == b.reply  # same model, same sampling settings and seed: same reply
        assert pane.query_one("#chat-input").value == ""

        # A long reply, stopped mid-way with Esc; the UI keeps answering meanwhile.
        pane.query_one("#temperature").value = "0"
        pane.query_one("#max-tokens").value = "400"
        pane.set_engines(BASE)
        await pilot.pause()
        pane.query_one("#chat-input").focus()
        await pilot.press(*"Count from 1 to 300, separated by commas.", "enter")
        await wait_until(pilot, lambda: len(pane.columns["a"].turns[1].reply) > 15, what="some tokens")
        shown = str(pane.query_one("#reply-a-1").render())
        assert shown.endswith("▌")  # streaming, drawn as it comes
        await pilot.press("escape")
        await wait_until(pilot, lambda: not pane.busy(), 30, "the reply to stop")
        stopped = pane.columns["a"].turns[1]
        assert stopped.state == "stopped"
        await pilot.pause(0.5)
        assert pane.columns["a"].turns[1].reply == stopped.reply  # nothing more came after the stop
        assert "(stopped)" in str(pane.query_one("#reply-a-1").render())
        assert len(pane.columns["b"].turns) == 1  # column B was "none" for this turn

        records = _records(pane)
        assert [(r["role"], r.get("column")) for r in records] == [
            ("user", None), ("assistant", "a"), ("assistant", "b"), ("user", None), ("assistant", "a")]
        assert records[0]["sampling"] == {"temperature": 0.8, "top_p": 0.95, "max_tokens": 20, "seed": 7}
        assert records[-1]["stopped"] is True and records[-1]["content"] == stopped.reply
        assert records[0]["persona_on"] is False

        # Send the stopped reply to annotation.
        await pilot.press("f2")
        await pilot.pause()
        queue = [json.loads(line) for line in (sf.workspace / "annotation_queue.jsonl").read_text().splitlines()]
        assert queue == [{"source": "chat", "prompt": "Count from 1 to 300, separated by commas.",
                          "reply": stopped.reply, "engine": BASE, "persona": ""}]


async def test_persona_switch_puts_the_persona_in_the_system_prompt(tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        pane = app.query_one(ChatPane)
        assert pane.persona_id() == "ada" and pane.system_prompt() == ""
        pane.query_one("#persona-on").value = True
        await pilot.pause()
        assert pane.system_prompt().startswith("You are Ada. A beekeeper")
        pane.query_one("#temperature").value = "0"
        pane.query_one("#max-tokens").value = "8"
        assert pane.send("Who are you?")
        await wait_until(pilot, lambda: not pane.busy(), what="the reply")
        record = _records(pane)[0]
        assert record["persona_on"] is True and record["persona"] == "ada"
        # Bad settings are refused with a sentence, nothing is sent.
        pane.query_one("#top-p").value = "1.5"
        assert not pane.send("Again?")
        assert len(pane.columns["a"].turns) == 1
