"""Edit one trait: its text, marker phrases, expression probes and knowledge probes."""

from __future__ import annotations

import copy
from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Input, Label, TextArea

from persona_tui.screens.choice import confirm
from persona_tui.screens.probe_editor import ProbeEditor
from persona_tui.widgets.mouse_button import MouseButton
from sessions.model import KnowledgeProbe, Trait


def lines_of(text: str) -> list[str]:
    """One item per non-blank line, stripped: how every 'one per line' field is read."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class ProbeTable(DataTable):
    """The knowledge probes of the trait being edited; enter edits the row under the cursor."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Edit probe"),
        Binding("a", "add_probe", "Add probe"),
        Binding("delete,x", "delete_probe", "Delete probe", key_display="del"),
    ]

    def action_add_probe(self) -> None:
        self.screen.add_probe()

    def action_delete_probe(self) -> None:
        self.screen.delete_probe()


class TraitEditor(ModalScreen[Trait | None]):
    """Works on a copy; returns the edited trait on save, None on cancel.

    `check_id(new_id)` returns an error sentence for an id that is unusable in this persona
    (taken by another trait, or unsafe as a file name) or None.
    """

    # Read when a dialog is first shown, not at start-up (a cost on the first frame).
    CSS_PATH = "modals.tcss"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Keep trait"),
    ]

    def __init__(self, trait: Trait, check_id: Callable[[str], str | None], *, new: bool = False) -> None:
        super().__init__()
        self.trait = copy.deepcopy(trait)
        self.check_id = check_id
        self.new = new

    def compose(self) -> ComposeResult:
        title = "New trait" if self.new else f"Trait {self.trait.id}"
        with Vertical(classes="dialog -wide", id="trait-editor"):
            yield Label(title, classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body", can_focus=False):
                yield Label("Id", classes="field-label")
                yield Input(self.trait.id, id="trait-id", compact=True)
                yield Label("Text: the trait in a sentence", classes="field-label")
                yield TextArea(self.trait.text, id="trait-text", compact=True, classes="-short")
                yield Label("Markers: phrases that suggest the trait showed (one per line)", classes="field-label")
                yield TextArea("\n".join(self.trait.markers), id="trait-markers", compact=True, classes="-short")
                yield Label(
                    "Contradicting: phrases that go against it, e.g. coffee for tea-not-coffee", classes="field-label"
                )
                yield TextArea("\n".join(self.trait.contra_markers), id="trait-contra", compact=True, classes="-short")
                yield Label("Expression probes: prompts where it could show (one per line)", classes="field-label")
                yield TextArea(
                    "\n".join(self.trait.expression_probes), id="trait-expression", compact=True, classes="-medium"
                )
                yield Label("Knowledge probes (a: add, enter: edit, del: delete)", classes="field-label")
                yield ProbeTable(id="probe-table", cursor_type="row", zebra_stripes=True)
                with Horizontal(classes="row-buttons"):
                    yield MouseButton("Add probe", id="add-probe", compact=True)
                    yield MouseButton("Edit probe", id="edit-probe", compact=True)
                    yield MouseButton("Delete probe", id="delete-probe", compact=True)
            yield Label("", id="trait-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep trait", variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#trait-error").display = False
        table = self.query_one(ProbeTable)
        table.add_columns("question", "affirm", "deny")
        self.refresh_probes()
        self.set_focus(self.query_one("#trait-id" if self.new else "#trait-text"))

    def refresh_probes(self, cursor: int | None = None) -> None:
        table = self.query_one(ProbeTable)
        table.clear()
        for probe in self.trait.knowledge_probes:
            table.add_row(probe.question, probe.affirm, probe.deny)
        if cursor is not None and self.trait.knowledge_probes:
            table.move_cursor(row=min(cursor, len(self.trait.knowledge_probes) - 1))

    def _probe_index(self) -> int | None:
        table = self.query_one(ProbeTable)
        if not self.trait.knowledge_probes:
            return None
        return min(max(table.cursor_row, 0), len(self.trait.knowledge_probes) - 1)

    # -- knowledge probes ---------------------------------------------------------------
    def add_probe(self) -> None:
        def added(probe: KnowledgeProbe | None) -> None:
            if probe is not None:
                self.trait.knowledge_probes.append(probe)
                self.refresh_probes(cursor=len(self.trait.knowledge_probes) - 1)

        self.app.push_screen(ProbeEditor(), added)

    def edit_probe(self) -> None:
        index = self._probe_index()
        if index is None:
            self.add_probe()
            return

        def edited(probe: KnowledgeProbe | None) -> None:
            if probe is not None:
                self.trait.knowledge_probes[index] = probe
                self.refresh_probes(cursor=index)

        self.app.push_screen(ProbeEditor(self.trait.knowledge_probes[index]), edited)

    def delete_probe(self) -> None:
        index = self._probe_index()
        if index is None:
            return
        question = self.trait.knowledge_probes[index].question

        def answered(choice: str) -> None:
            if choice == "yes":
                del self.trait.knowledge_probes[index]
                self.refresh_probes(cursor=index)

        self.app.push_screen(confirm("Delete knowledge probe?", f"“{question}”"), answered)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.edit_probe()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {
            "add-probe": self.add_probe,
            "edit-probe": self.edit_probe,
            "delete-probe": self.delete_probe,
            "ok": self.action_save,
            "cancel": self.action_cancel,
        }
        actions[event.button.id]()

    # -- closing ------------------------------------------------------------------------
    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        trait_id = self.query_one("#trait-id", Input).value.strip()
        text = " ".join(lines_of(self.query_one("#trait-text", TextArea).text))
        problem = self.check_id(trait_id)
        if problem is None and not text:
            problem = "A trait needs its text: say the trait in a sentence."
        if problem:
            error = self.query_one("#trait-error", Label)
            error.update(problem)
            error.display = True
            return
        self.trait.id = trait_id
        self.trait.text = text
        self.trait.markers = lines_of(self.query_one("#trait-markers", TextArea).text)
        self.trait.contra_markers = lines_of(self.query_one("#trait-contra", TextArea).text)
        self.trait.expression_probes = lines_of(self.query_one("#trait-expression", TextArea).text)
        self.dismiss(self.trait)
