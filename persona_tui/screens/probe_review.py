"""Review probes the writer proposes for a persona before any of them is kept."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ProbeReview(ModalScreen[bool]):
    """Shows every proposed knowledge probe and open prompt, and any that repeat the training
    data; returns True only when Keep is chosen (and nothing repeats)."""

    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("k", "keep", "Keep", show=False)]

    def __init__(
        self,
        persona_name: str,
        proposals: list,
        repeats: list[tuple[str, str]],
        checked: str,
        source: str = "by templates",
    ) -> None:
        super().__init__()
        self.source = source
        self.persona_name = persona_name
        self.proposals = proposals
        self.repeats = repeats
        self.checked = checked

    def _table(self) -> Table:
        table = Table("Trait", "Probe", box=None, show_edge=False, pad_edge=False, expand=True)
        for p in self.proposals:
            for note in getattr(p, "notes", []):  # a teacher's: how many it wrote, what was dropped and why
                table.add_row(p.trait, Text(note, style="dim italic"))
            for k in p.knowledge:
                table.add_row(
                    p.trait, Text.assemble(k.question, "\n", ("+ " + k.affirm, "green"), "\n", ("− " + k.deny, "red"))
                )
            for prompt in p.expression:
                table.add_row(p.trait, Text.assemble(("open: ", "dim"), prompt))
        return table

    def compose(self) -> ComposeResult:
        total = sum(len(p.knowledge) + len(p.expression) for p in self.proposals)
        with Vertical(classes="dialog -wide"):
            yield Label(f"Proposed probes for {self.persona_name}: {total}", classes="dialog-title", markup=False)
            note = f"Written from the traits and facts {self.source}; {self.checked}."
            if self.repeats:
                note += f" {len(self.repeats)} repeat the training data and cannot be kept: " + "; ".join(
                    f"{where}: {sentence!r}" for where, sentence in self.repeats[:3]
                )
            yield Static(note, classes="dialog-help", markup=False, id="probe-review-note")
            with VerticalScroll(classes="dialog-body", id="probe-review-body"):
                yield Static(self._table(), id="probe-review-table")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Keep (k)", variant="primary", id="ok", compact=True, disabled=bool(self.repeats) or not total
                )
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#probe-review-body").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_keep()
        else:
            self.action_cancel()

    def action_keep(self) -> None:
        if not self.query_one("#ok", Button).disabled:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
