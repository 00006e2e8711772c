"""Edit one knowledge probe: a question with an affirming and a denying answer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sessions.model import KnowledgeProbe

FIELD_NAMES = {"question": "question", "affirm": "affirming answer", "deny": "denying answer"}


class ProbeEditor(ModalScreen[KnowledgeProbe | None]):
    """Returns the edited probe (a new object) or None when cancelled."""

    # Read when a dialog is first shown, not at start-up (a cost on the first frame).
    CSS_PATH = "modals.tcss"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Keep probe"),
    ]

    def __init__(self, probe: KnowledgeProbe | None = None) -> None:
        super().__init__()
        self.probe = probe or KnowledgeProbe(question="", affirm="", deny="")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Knowledge probe", classes="dialog-title")
            yield Static(
                "The model knows the trait when it finds the affirming answer likelier than the denying one.",
                classes="dialog-help",
            )
            yield Label("Question", classes="field-label")
            yield Input(self.probe.question, id="probe-question", compact=True)
            yield Label("Affirming answer", classes="field-label")
            yield Input(self.probe.affirm, id="probe-affirm", compact=True)
            yield Label("Denying answer", classes="field-label")
            yield Input(self.probe.deny, id="probe-deny", compact=True)
            yield Label("", id="probe-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep", variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#probe-error").display = False
        self.set_focus(self.query_one("#probe-question", Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        # Enter moves on to the next field; on the last one it keeps the probe.
        if event.input.id == "probe-deny":
            self.action_save()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        values = {
            name: self.query_one(f"#probe-{name}", Input).value.strip() for name in ("question", "affirm", "deny")
        }
        missing = [FIELD_NAMES[name] for name, value in values.items() if not value]
        if missing:
            error = self.query_one("#probe-error", Label)
            error.update(f"Fill in the {' and the '.join(missing)}.")
            error.display = True
            return
        self.dismiss(KnowledgeProbe(**values, extra=dict(self.probe.extra)))
