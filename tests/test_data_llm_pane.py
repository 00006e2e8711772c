"""The Data pane follows an llm build live: requests, tokens, time (and cost when priced) in its
progress line, from the job the pane starts, against a local OpenAI-wire server."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from fake_openai_server import FakeOpenAI
from persona_tui.app import make_app
from persona_tui.panes.data import DataPane, DatasetList
from sessions.demo import write_demo_session
from sessions.model import EngineSpec
from sessions.store import SessionFile
from waiting import wait_until as until

pytestmark = pytest.mark.anyio


async def test_an_llm_build_shows_requests_tokens_time_and_cost_while_it_runs(tmp_path: Path):
    with FakeOpenAI(latency=0.25) as server:
        path = write_demo_session(tmp_path)
        sf = SessionFile.load(path)
        sf.session.engines.append(EngineSpec(id="t", kind="openai", base_url=server.url, model="teacher-1"))
        ds = sf.session.datasets[0]
        ds.generator, ds.engine, ds.size, ds.held_out = "llm", "t", 30, 0.0
        ds.extra = {
            "token_stats": False,
            "llm": {
                "concurrency": 2,
                "embedding_threshold": 0.0,
                "price_input_per_1k": 0.5,
                "price_output_per_1k": 1.5,
            },
        }
        sf.save()
        app = make_app(path)
        async with app.run_test(size=(110, 30)) as pilot:
            await pilot.press("2")
            await pilot.pause()
            pane = app.query_one(DataPane)
            app.query_one(DatasetList).focus()
            await pilot.press("b")
            state = app.query_one("#data-job-state", Static)
            seen: list[str] = []

            def live() -> bool:
                text = str(state.render())
                seen.append(text)
                return text.startswith("running:") and " tok" in text and "cost " in text

            await until(pilot, live, what="the teacher's tokens and cost in the progress line")
            line = seen[-1]
            assert " req (" in line and " live)" in line and " s, cost " in line
            await until(pilot, lambda: len(pane.rows) == 30, what="the built examples")
    assert len(server.requests) >= 30
    assert SessionFile.load(path).session.datasets[0].generator == "llm"  # opening the pane kept the spec
