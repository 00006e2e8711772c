"""Export from the Train pane with Pilot, for real: `x` on a finished training job opens the dialog
(expected sizes from the base model's parameter count), the export runs as a detached job whose
steps and verification (top-1, KL per GGUF) show in the Live view, the session lists it, and the
Chat pane offers its verified GGUF labelled with quant and size."""

from __future__ import annotations

import re

import pytest

from export_fixtures import make_session, make_train_job
from persona_tui.app import make_app
from persona_tui.panes.chat import ChatPane
from persona_tui.panes.train import TrainPane
from persona_tui.screens.export import ExportScreen
from sessions.store import SessionFile
from supervisor import jobs
from waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_x_exports_a_finished_run_verified_and_chat_offers_it(tmp_path):
    sf = make_session(tmp_path)
    train_job = make_train_job(sf).name
    app = make_app(SessionFile.load(sf.path))
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("3")
            pane = app.query_one(TrainPane)
            await wait_until(
                pilot,
                lambda: pane.selected_job == train_job and train_job in pane.statuses,
                what="the training job listed",
            )
            await pilot.press("x")
            await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen), what="the export dialog")
            dialog = app.screen
            assert "134.5 M parameters" in str(dialog.query_one(".dialog-help").render())
            assert "≈269 MB" in str(dialog.query_one(".dialog-help").render())  # f16: 2 bytes a parameter
            q8 = dialog.query_one("#export-q-q8_0")
            assert q8.value and "≈143 MB" in str(q8.label)
            dialog.query_one("#export-q-q4_k_m").value = False  # one quantization keeps the test short
            dialog.query_one("#export-lora").value = False
            await pilot.click("#export-ok")
            await wait_until(
                pilot,
                lambda: (pane.selected_job or "").startswith("export-"),
                timeout=60,
                what="the Live view on the export job",
            )
            export_id = pane.selected_job

            def stats():
                return str(pane.query_one("#live-stats").render())

            assert stats().startswith(f"{export_id}  ")
            await wait_until(pilot, lambda: pane.statuses[export_id].terminal, timeout=900, what="the export")
            assert pane.statuses[export_id].state == "finished", pane.statuses[export_id].error
            await wait_until(pilot, lambda: "q8_0: top-1" in stats(), timeout=10, what="the verification shown")
            for quant in ("f16", "q8_0"):
                assert re.search(rf"^{quant}: top-1 [01]\.\d{{3}}  KL \d\.\d{{4}}  pass$", stats(), re.MULTILINE), (
                    stats()
                )
            assert "q4_k_m" not in stats()
            await wait_until(pilot, lambda: export_id in pane._recorded, timeout=10, what="the session listing")

            await pilot.press("4")
            chat = app.query_one(ChatPane)
            ref = f"export:{export_id}:q8_0"
            await wait_until(
                pilot, lambda: ref in {r for _, r in chat._choices}, timeout=30, what="the export in the Chat pickers"
            )
            label = {r: lab for lab, r in chat._choices}[ref]
            assert re.fullmatch(r"export r1 q8_0 1\d\d MB · llama\.cpp", label), label
        exports = SessionFile.load(sf.path).session.run("r1").extra["exports"]
        assert [e["job"] for e in exports] == [export_id] and exports[0]["ok"]
    finally:
        for s in jobs.list_jobs(sf.workspace):
            if not s.terminal:
                jobs.cancel_job(s.dir, force=True)
