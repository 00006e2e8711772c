"""Ask for one line of text (a new id, a file path), checked before the modal closes."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class TextPrompt(ModalScreen[str | None]):
    """Returns the entered text, or None when cancelled.

    `check` returns an error sentence for a bad value (shown under the input; the modal stays
    open) or None to accept it.
    """

    # Read when a dialog is first shown, not at start-up (a cost on the first frame).
    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        *,
        value: str = "",
        help: str = "",
        placeholder: str = "",
        ok_label: str = "OK",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.prompt_title = title
        self.help = help
        self.initial = value
        self.placeholder = placeholder
        self.ok_label = ok_label
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt_title, classes="dialog-title", markup=False)
            if self.help:
                yield Static(self.help, classes="dialog-help", markup=False)
            yield Input(self.initial, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok_label, variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt-error").display = False
        self.set_focus(self.query_one("#prompt-input", Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._accept()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _accept(self) -> None:
        value = self.query_one("#prompt-input", Input).value.strip()
        problem = self.check(value) if self.check else None
        if problem:
            error = self.query_one("#prompt-error", Label)
            error.update(problem)
            error.display = True
            return
        self.dismiss(value)
