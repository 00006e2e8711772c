"""A question with a few buttons: confirm a delete, or decide what to do when a save fails."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ChoiceScreen(ModalScreen[str]):
    """Returns the key of the chosen button; escape returns `cancel_key`.

    `choices` are (key, label, variant) with variant one of Textual's button variants; each
    label's first letter (or the key given as `hotkeys`) also chooses it.
    """

    # Read when a dialog is first shown, not at start-up (a cost on the first frame).
    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape", "choose_cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        message: str,
        choices: list[tuple[str, str, str]],
        *,
        cancel_key: str = "cancel",
        hotkeys: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.choice_title = title
        self.message = message
        self.choices = choices
        self.cancel_key = cancel_key
        self.hotkeys = hotkeys or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.choice_title, classes="dialog-title", markup=False)
            yield Static(self.message, classes="dialog-help", markup=False)
            with Horizontal(classes="dialog-buttons"):
                keys_for = {choice: key for key, choice in self.hotkeys.items()}
                for key, label, variant in self.choices:
                    if key in keys_for:
                        label = f"{label} ({keys_for[key]})"
                    elif key == self.cancel_key:
                        label = f"{label} (esc)"
                    yield Button(label, variant=variant, id=f"choice-{key}", name=key, compact=True)

    def on_mount(self) -> None:
        # Focus the last button (the safe one by convention: Cancel / No).
        self.set_focus(self.query(Button).last())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.name or self.cancel_key)

    def on_key(self, event) -> None:
        key = self.hotkeys.get(event.key)
        if key is not None:
            event.stop()
            self.dismiss(key)

    def action_choose_cancel(self) -> None:
        self.dismiss(self.cancel_key)


def confirm(title: str, message: str, yes: str = "Delete") -> ChoiceScreen:
    """A yes/no question whose yes is destructive: y chooses it, n or escape does not."""
    return ChoiceScreen(
        title,
        message,
        [("yes", yes, "error"), ("no", "Cancel", "default")],
        cancel_key="no",
        hotkeys={"y": "yes", "n": "no"},
    )
