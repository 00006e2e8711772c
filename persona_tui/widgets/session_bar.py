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

    title: reactive[str] = reactive("", init=False)
    state: reactive[str] = reactive("saved", init=False)

    def __init__(self, title: str = "", state: str = "saved", **kwargs) -> None:
        super().__init__(**kwargs)
        # Set without watchers: compose builds the labels with these values already in place.
        self.set_reactive(SessionBar.title, title)
        self.set_reactive(SessionBar.state, state)

    def compose(self) -> ComposeResult:
        text, css_class = SAVE_STATES[self.state]
        yield Label(self.title, id="session-title", markup=False)
        yield Label(text, id="save-state", classes=css_class, markup=False)

    def watch_title(self, title: str) -> None:
        self.query_one("#session-title", Label).update(title)

    def watch_state(self, state: str) -> None:
        text, css_class = SAVE_STATES[state]
        label = self.query_one("#save-state", Label)
        label.update(text)
        label.set_classes(css_class)
