"""The Chat pane with Pilot: two engines stream side by side with the same seed, a reply is
stopped mid-way, the persona switch reaches the system prompt, history and annotation are kept."""

from __future__ import annotations

import json

import pytest

from engines.models import resolve_model
from export_fixtures import BASE, make_session
from persona_tui.app import make_app
from persona_tui.panes.chat import ChatPane
from sessions.store import SessionFile
from waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _records(pane: ChatPane) -> list[dict]:
    return [json.loads(line) for line in pane.chat_log.path.read_text().splitlines()]


async def test_stream_side_by_side_stop_midway_and_annotate(tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        pane = await app.pane("chat")
        assert isinstance(pane, ChatPane)
        # The same bundled model twice, as two engines (two llama.cpp instances).
        pane.set_engines(BASE, f"gguf:{resolve_model(BASE).path}")
        pane.query_one("#temperature").value = "0.8"
        pane.query_one("#seed").value = "7"
        pane.query_one("#max-tokens").value = "20"
        await pilot.pause()
        pane.query_one("#chat-input").focus()
        await pilot.press(*"Tell me a joke.", "enter")

        def finished() -> bool:
            turns = [t for c in "ab" for t in pane.columns[c].turns]
            return len(turns) == 2 and all(t.state in ("done", "stopped", "error") for t in turns) and not pane.busy()

        await wait_until(pilot, finished, what="both replies")
        a, b = pane.columns["a"].turns[0], pane.columns["b"].turns[0]
        assert a.state == b.state == "done" and a.reply.strip()
        assert a.reply == b.reply  # same model, same sampling settings and seed: same reply
        assert pane.query_one("#chat-input").value == ""

        first = _records(pane)
        assert first[0]["role"] == "user" and sorted(r["column"] for r in first[1:]) == ["a", "b"]
        assert first[0]["sampling"] == {"temperature": 0.8, "top_p": 0.95, "max_tokens": 20, "seed": 7}
        assert first[0]["persona_on"] is False
        assert {r["column"]: r["content"] for r in first[1:]} == {"a": a.reply, "b": b.reply}

        # A new conversation; a long reply, stopped mid-way with Esc.
        await pilot.press("ctrl+n")
        assert pane.columns["a"].turns == [] and pane.chat_log is None
        pane.query_one("#temperature").value = "0"
        pane.query_one("#max-tokens").value = "1500"  # a long reply: time to see it stream and stop it
        pane.set_engines(BASE)
        await pilot.pause()
        pane.query_one("#chat-input").focus()
        await pilot.press(*"Count from 1 to 300, separated by commas.", "enter")
        await wait_until(pilot, lambda: len(pane.columns["a"].turns[0].reply) > 15, what="some tokens")
        shown = str(pane.query_one("#reply-a-0").render())
        assert shown.endswith("▌")  # streaming, drawn as it comes
        await pilot.press("escape")
        # The worker's end and the pane's handling of it are two steps: wait for both.
        await wait_until(
            pilot,
            lambda: not pane.busy() and pane.columns["a"].turns[0].state in ("done", "stopped", "error"),
            30,
            "the reply to stop",
        )
        stopped = pane.columns["a"].turns[0]
        assert stopped.state == "stopped"
        # The reply workers only: the pane's export watcher and the app's meters poll until they close.
        await wait_until(
            pilot,
            lambda: all(w.is_finished for w in app.workers if w.group.startswith("reply-")),
            what="the reply workers to end",
        )
        await pilot.pause()  # what the worker posted before it ended is handled now
        assert pane.columns["a"].turns[0].reply == stopped.reply  # nothing more came after the stop
        assert "(stopped)" in str(pane.query_one("#reply-a-0").render())
        assert pane.columns["b"].turns == []  # column B is "none" now

        second = _records(pane)
        assert pane.chat_log.path.parent == sf.workspace / "chats"
        assert [(r["role"], r.get("column")) for r in second] == [("user", None), ("assistant", "a")]
        assert second[-1]["stopped"] is True and second[-1]["content"] == stopped.reply
        assert len(list((sf.workspace / "chats").glob("*.jsonl"))) == 2

        # Send the stopped reply to annotation.
        await pilot.press("f2")
        await pilot.pause()
        queue = [json.loads(line) for line in (sf.workspace / "annotation_queue.jsonl").read_text().splitlines()]
        assert queue == [
            {
                "source": "chat",
                "prompt": "Count from 1 to 300, separated by commas.",
                "reply": stopped.reply,
                "engine": BASE,
                "persona": "",
            }
        ]


async def test_persona_switch_puts_the_persona_in_the_system_prompt(tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        pane = await app.pane("chat")
        assert isinstance(pane, ChatPane)
        assert pane.persona_id() == "ada" and pane.system_prompt() == ""
        pane.query_one("#persona-on").value = True
        await pilot.pause()
        assert pane.system_prompt().startswith("You are Ada. A beekeeper")
        pane.query_one("#temperature").value = "0"
        pane.query_one("#max-tokens").value = "8"
        assert pane.send("Who are you?")
        await wait_until(
            pilot, lambda: pane.columns["a"].turns[0].state == "done" and not pane.busy(), what="the reply"
        )
        record = _records(pane)[0]
        assert record["persona_on"] is True and record["persona"] == "ada"
        # Bad settings are refused with a sentence, nothing is sent.
        pane.query_one("#top-p").value = "1.5"
        assert not pane.send("Again?")
        assert len(pane.columns["a"].turns) == 1
