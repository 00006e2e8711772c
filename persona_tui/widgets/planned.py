"""A tab that is not built yet says so, and says what it will hold: no fake controls."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class PlannedPane(VerticalScroll):
    """Base for a pane whose capability has not landed: a heading and one paragraph."""

    DEFAULT_CSS = """
    PlannedPane {
        padding: 1 2;
    }
    PlannedPane > .planned-title {
        text-style: bold;
        margin-bottom: 1;
    }
    PlannedPane > .planned-body {
        color: $text-muted;
        max-width: 90;
    }
    """

    TITLE = ""
    BODY = ""

    # Set by the app before mounting; unused until the pane is built.
    session_file = None

    def compose(self) -> ComposeResult:
        yield Static(f"{self.TITLE} — not built yet", classes="planned-title", markup=False)
        yield Static(self.BODY, classes="planned-body", markup=False)
