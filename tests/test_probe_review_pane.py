"""The Personas pane's probe review: proposed probes are shown, kept only on Keep, and refused
when they repeat the persona's training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_tui.app import make_app
from persona_tui.panes.personas import PersonaList
from persona_tui.screens.probe_review import ProbeReview
from sessions.demo import write_demo_session
from sessions.store import SessionFile
from sessions.workspace import dataset_path
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio


def _counts(path: Path) -> list[int]:
    return [len(t.knowledge_probes) for t in SessionFile.load(path).session.personas[0].traits]


async def test_proposed_probes_are_reviewed_then_kept(tmp_path: Path):
    path = write_demo_session(tmp_path)
    before = _counts(path)
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.focused, PersonaList)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeReview), what="the review screen")
        from rich.console import Console

        console = Console(width=76, record=True)
        console.print(app.screen._table())
        shown = " ".join(console.export_text().split())
        first = app.screen.proposals[0].knowledge[0]
        assert first.question.split()[0] in shown and f"+ {first.affirm}" in shown and f"− {first.deny}" in shown
        assert not app.screen.query_one("#ok").disabled
        await pilot.press("escape")  # cancel: nothing changes
        await wait_until(pilot, lambda: not isinstance(app.screen, ProbeReview), what="the review to close")
        assert not app.dirty
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeReview), what="the review screen")
        await pilot.press("k")
        await wait_until(pilot, lambda: _counts(path) == [b + 6 for b in before], what="the kept probes on disk")
        await pilot.press("q")


async def test_probes_that_repeat_the_training_data_cannot_be_kept(tmp_path: Path):
    path = write_demo_session(tmp_path)
    sf = SessionFile.load(path)
    data = dataset_path(sf.workspace, "odile-chat")
    data.parent.mkdir(parents=True)
    line = "Is it true that you never learned to swim, even after a lifetime at sea?"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": line}, {"role": "assistant", "content": "Aye."}]}) + "\n"
    )
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeReview), what="the review screen")
        screen = app.screen
        assert screen.query_one("#ok").disabled
        assert screen.repeats and "cannot-swim" in screen.repeats[0][0]
        note = str(screen.query_one("#probe-review-note").render())
        assert "repeat the training data" in note
        await pilot.press("k")  # refused: the button is off
        assert isinstance(app.screen, ProbeReview)
        await pilot.press("escape")
        await pilot.press("q")


async def test_contradicting_phrases_are_edited_in_the_trait_editor(tmp_path: Path):
    from persona_tui.panes.personas import TraitTable
    from persona_tui.screens.trait_editor import TraitEditor

    path = write_demo_session(tmp_path)
    app = make_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one(TraitTable).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TraitEditor), what="the trait editor")
        area = app.screen.query_one("#trait-contra")
        assert area.text.splitlines() == SessionFile.load(path).session.personas[0].traits[0].contra_markers
        area.focus()
        area.move_cursor(area.document.end)
        await pilot.press("enter", *"lost at sea")
        await pilot.press("ctrl+s")
        await wait_until(
            pilot,
            lambda: SessionFile.load(path).session.personas[0].traits[0].contra_markers[-1] == "lost at sea",
            what="the new phrase on disk",
        )
        await pilot.press("q")


async def test_a_teacher_engine_writes_probes_for_review_then_they_are_kept(tmp_path: Path):
    """P: the session's engine (a real HTTP endpoint here) writes the probes off the UI thread;
    the review shows them with the teacher's notes; Keep puts them in the session."""
    from test_probe_writer import _teacher_reply

    from fake_openai_server import FakeOpenAI
    from sessions.model import EngineSpec

    path = write_demo_session(tmp_path)
    with FakeOpenAI(reply=_teacher_reply) as server:  # answers for any trait ("bicycle" unless about clocks)
        sf = SessionFile.load(path)
        sf.session.engines = [EngineSpec(id="t", kind="openai", base_url=server.url, model="teacher-1")]
        sf.save()
        before = _counts(path)
        app = make_app(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("P")
            await wait_until(pilot, lambda: isinstance(app.screen, ProbeReview), timeout=60, what="the review screen")
            screen = app.screen
            assert len(server.requests) == len(before)  # one request per trait
            assert "by engine 't'" in str(screen.query_one("#probe-review-note").render())
            first = screen.proposals[0]
            assert first.knowledge[0].question == "What do you do about bicycle, question 0?"
            assert any(n.startswith("teacher 't'") for n in first.notes)
            assert any("the same affirming and denying answer" in n for n in first.notes)
            await pilot.press("k")
            await wait_until(pilot, lambda: _counts(path) == [b + 6 for b in before], what="the kept probes on disk")
            await pilot.press("q")
