"""Every pane as it looks on the demo session at the smallest size (80x24) and a roomy one
(120x40), as SVG snapshots.

The picture holds nothing of this machine or this moment: the session is the demo one written
fresh into tmp_path (no job has run, so no dates), the annotator is named, and the Train pane's
machine line is a fixed text. Other tests keep their own snapshots of a pane in a particular
state (a finished job in the Train pane, an output being labelled in the Annotate pane).

After an intended change to a pane (or textual's version), regenerate them all with

    .venv/bin/python -m pytest tests/test_pane_snapshots.py --snapshot-update

and look at the SVGs under tests/__snapshots__/test_pane_snapshots/ before keeping them.
"""

from __future__ import annotations

import pytest

from persona_tui.app import TABS, make_app
from sessions.demo import write_demo_session

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def demo_path(tmp_path, monkeypatch):
    """The demo session, with the two things that would differ between machines fixed."""
    import persona_tui.panes.train as train_pane
    from evaluators.annotation import ANNOTATOR_ENV

    monkeypatch.setenv(ANNOTATOR_ENV, "sam")
    monkeypatch.setattr(train_pane, "machine_text", lambda: "CPU  12% of 2  load 0.4  RAM 1.6/23.5 GiB")
    return write_demo_session(tmp_path)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize(
    "key, tab_id", [(str(n), tab_id) for n, (tab_id, _, _) in enumerate(TABS, 1)], ids=[tab_id for tab_id, _, _ in TABS]
)
def test_pane(snap_compare, demo_path, key, tab_id, size):
    app = make_app(demo_path)

    async def open_pane(pilot):
        await pilot.press(key)
        await app.pane(tab_id)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_pane)
