"""Show rich renderables (result tables) in a scrollable dialog; any key that is not a scroll key closes it."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ReportScreen(ModalScreen[None]):
    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, renderables: Iterable[RenderableType]) -> None:
        super().__init__()
        self.report_title = title
        self.renderables = list(renderables)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -wide"):
            yield Label(self.report_title, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body", id="report-body"):
                yield Static(Group(*self.renderables), id="report-content")

    def on_mount(self) -> None:
        self.query_one("#report-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
