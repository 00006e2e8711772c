"""Edit one dataset example as JSON, checked against its format before the modal closes."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea


class ExampleEditor(ModalScreen[dict[str, Any] | None]):
    """Returns the edited record, or None when cancelled. ctrl+s saves, escape cancels."""

    CSS_PATH = "modals.tcss"  # the shared dialog layout, read when first shown

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, record: dict[str, Any], fmt: str, title: str) -> None:
        super().__init__()
        self.record = record
        self.fmt = fmt
        self.editor_title = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -wide"):
            yield Label(self.editor_title, classes="dialog-title", markup=False)
            yield Static(
                f"A {self.fmt} record as JSON (see trainers/data/formats). ctrl+s saves, escape cancels.",
                classes="dialog-help",
                markup=False,
            )
            yield TextArea(
                json.dumps(self.record, indent=2, ensure_ascii=False),
                id="example-json",
                classes="dialog-body",
                compact=True,
            )
            yield Label("", id="example-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#example-error").display = False
        self.query_one("#example-json", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def problem(self, text: str) -> tuple[dict[str, Any] | None, str | None]:
        from trainers.data.formats import check_record

        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            return None, f"Line {e.lineno}, column {e.colno}: {e.msg}; fix the JSON."
        problem = check_record(record, self.fmt)
        if problem:
            return None, f"Not a valid {self.fmt} example: {problem}."
        return record, None

    def action_save(self) -> None:
        record, problem = self.problem(self.query_one("#example-json", TextArea).text)
        if problem:
            error = self.query_one("#example-error", Label)
            error.update(problem)
            error.display = True
            return
        self.dismiss(record)
