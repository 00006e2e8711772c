"""The one-line header: which session is open and whether it is on disk."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

# state -> (text shown, CSS class)
SAVE_STATES = {
    "saved": ("● saved", "-saved"),
    "unsaved": ("○ unsaved", "-unsaved"),
    "error": ("✗ not saved", "-error"),
}


class SessionBar(Horizontal):
    DEFAULT_CSS = """
    SessionBar {
        height: 1;
        dock: top;
        background: $panel;
    }
    SessionBar > #session-title {
        width: 1fr;
        padding: 0 1;
        text-style: bold;
    }
    SessionBar > #save-state {
        width: auto;
        padding: 0 1;
    }
    SessionBar > #save-state.-saved { color: $success; }
    SessionBar > #save-state.-unsaved { color: $warning; }
    SessionBar > #save-state.-error { color: $error; text-style: bold; }
    """

    title: reactive[str] = reactive("")
    state: reactive[str] = reactive("saved")

    def compose(self) -> ComposeResult:
        yield Label("", id="session-title", markup=False)
        yield Label("", id="save-state", markup=False)

    def on_mount(self) -> None:
        self.watch_title(self.title)
        self.watch_state(self.state)

    def watch_title(self, title: str) -> None:
        for label in self.query("#session-title").results(Label):
            label.update(title)

    def watch_state(self, state: str) -> None:
        text, css_class = SAVE_STATES[state]
        for label in self.query("#save-state").results(Label):
            label.update(text)
            label.set_classes(css_class)
