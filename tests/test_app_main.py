"""The main screen: tabs by number key, the command palette, the header's session name."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import TabbedContent

from persona_tui.app import TABS, PaneFailed, make_app
from persona_tui.widgets.session_bar import SessionBar
from waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_number_keys_switch_tabs_and_the_header_names_the_session(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        bar = app.query_one(SessionBar)
        assert "Odile Marsh demo" in str(bar.query_one("#session-title").render())
        assert bar.state == "saved"
        tabs = app.query_one(TabbedContent)
        assert [tab_id for tab_id, _, _ in TABS] == ["personas", "data", "train", "chat", "evaluate", "annotate"]
        for n, (tab_id, _, _) in reversed(list(enumerate(TABS, 1))):
            await pilot.press(str(n))
            assert tabs.active == tab_id
        await pilot.press("q")
    assert not app.is_running


async def test_the_command_palette_runs_persona_actions(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")  # away from the Personas tab: the command comes back to it
        await pilot.press("ctrl+p")
        await pilot.press(*"duplicate persona")
        # The palette searches its providers in a worker: wait for its matches, not a fixed time.
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, CommandPalette) and app.screen.query_one(CommandList).option_count > 0,
            20,
            "the palette's matches",
        )
        await pilot.press("enter")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "personas"
        assert [p.id for p in app.session_file.session.personas] == ["odile", "odile-copy"]


async def test_panes_mount_when_opened_and_a_broken_one_stays_apart(session_path: Path, monkeypatch):
    """Only the first tab is built at start; a pane whose module fails to import shows why in
    its tab, and the Personas editor works on."""
    import persona_tui.app as app_module

    tabs = [
        (t, title, "persona_tui.panes.no_such_pane:Nothing" if t == "chat" else spec)
        for t, title, spec in app_module.TABS
    ]
    monkeypatch.setattr(app_module, "TABS", tabs)
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert [t for t in ("data", "train", "chat") if app.query_one(f"#{t}").children] == []
        await pilot.press("4")
        assert app.query_one(TabbedContent).active == "chat"
        chat = await app.pane("chat")
        assert isinstance(chat, PaneFailed)
        assert "no_such_pane" in str(chat.render())
        for tab_id in ("data", "train", "evaluate", "annotate"):
            assert not isinstance(await app.pane(tab_id), PaneFailed), tab_id
        await pilot.press("1", "d")
        assert len(app.session_file.session.personas) == 2
