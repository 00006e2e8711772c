"""The Chat pane as it looks at 80x24 on a fresh session (SVG snapshot): engines, persona switch,
sampling settings, two columns, the message line — all visible at the smallest size.

Regenerate after an intended change with `pytest tests/test_chat_snapshot.py --snapshot-update`
and look at the SVG before keeping it.
"""

from __future__ import annotations

from export_fixtures import make_session
from persona_tui.app import make_app
from sessions.store import SessionFile


def test_chat_pane_at_80x24(snap_compare, tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))

    async def show_chat(pilot):
        await pilot.press("4")
        pane = await app.pane("chat")
        pane.set_engines("bundled:smollm2-135m-instruct", "bundled:smollm2-135m-instruct")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=show_chat)
