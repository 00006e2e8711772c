"""The Personas pane as it looks at 100x30 on the demo session (SVG snapshot).

Regenerate after an intended change with `pytest tests/test_app_snapshot.py --snapshot-update`
and look at the SVG before keeping it.
"""

from __future__ import annotations

from persona_tui.app import make_app
from sessions.demo import write_demo_session


def test_personas_pane_at_100x30(snap_compare, tmp_path):
    app = make_app(write_demo_session(tmp_path))
    assert snap_compare(app, terminal_size=(100, 30))
