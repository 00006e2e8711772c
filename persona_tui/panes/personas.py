"""Personas pane: the list of personas and an editor for every field, traits and probes.

It edits `session_file.session` in place and posts `SessionChanged`; the app saves.
"""

from __future__ import annotations

import copy
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, ListItem, ListView, Static, TextArea

from persona_tui.messages import SessionChanged
from persona_tui.screens.choice import confirm
from persona_tui.screens.text_prompt import TextPrompt
from persona_tui.screens.trait_editor import TraitEditor, lines_of
from persona_tui.widgets.mouse_button import MouseButton
from sessions import workspace
from sessions.model import Persona, Trait


def id_problem(value: str, taken: set[str], what: str) -> str | None:
    """Why `value` cannot be the id of a new or renamed `what`, or None if it can."""
    if value in taken:
        return f"Another {what} already has the id '{value}': choose another."
    problem = workspace.id_problem(value)
    if problem:
        return f"The id {value!r} {problem}; ids become file names, so {workspace.ID_RULE}."
    return None


def unique_id(base: str, taken: set[str]) -> str:
    """`base` if it is a free, safe id, else a safe variant of it that is free."""
    if base not in taken and workspace.id_problem(base) is None:
        return base
    return workspace.make_id(base, taken, fallback="persona")


class PersonaList(ListView):
    """The personas by name; the highlighted one is shown in the editor."""

    BINDINGS = [Binding("enter", "edit_persona", "Edit", show=False)]

    def action_edit_persona(self) -> None:
        # Focus moves at once (not on a later message), so keys typed right after Enter
        # already land in the name field.
        self.screen.set_focus(self.screen.query_one("#persona-name", Input))


class TraitTable(DataTable):
    """The persona's traits; enter (or a click on the cursor row) edits one."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Edit trait"),
        Binding("a", "add_trait", "Add trait"),
        Binding("delete,x", "delete_trait", "Delete trait", key_display="del"),
    ]

    def action_add_trait(self) -> None:
        self.post_message(PersonasPane.TraitAction("add"))

    def action_delete_trait(self) -> None:
        self.post_message(PersonasPane.TraitAction("delete"))


class PersonasPane(Widget):
    BINDINGS = [
        Binding("a", "add_persona", "Add"),
        Binding("d", "duplicate_persona", "Clone"),
        Binding("r", "rename_persona", "Rename"),
        Binding("delete,x", "delete_persona", "Delete", key_display="del"),
        Binding("i", "import_card", "Import"),
        Binding("e", "export_card", "Export"),
        Binding("p", "write_probes", "Probes"),
        Binding("P", "write_probes_by_teacher", "Probes by teacher", show=False),
        Binding("t", "add_recipe", "Recipe"),
        Binding("escape", "focus_list", "List"),
    ]

    class TraitAction(Message):
        """Sent by the trait table's key bindings to the pane that owns the persona."""

        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    # Set by the app before mounting.
    session_file = None

    # Persona actions hidden from the footer (and off) while the trait table has focus, so the
    # table's own keys fit in 80 columns and "a" clearly means "add trait" there.
    PERSONA_ONLY = {
        "duplicate_persona",
        "rename_persona",
        "delete_persona",
        "import_card",
        "export_card",
        "write_probes",
        "write_probes_by_teacher",
    }

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.PERSONA_ONLY and isinstance(self.app.focused, TraitTable):
            return False
        return True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.current: int | None = None  # index into session.personas, set in compose
        self._rebuilding = False

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Built with the first persona's values in place, so the first frame needs one layout.
        personas = self.session.personas
        self.current = 0 if personas else None
        persona = self.persona or Persona(id="", name="")
        with Horizontal(id="personas-body"):
            with Vertical(id="persona-side"):
                yield Label("Personas", classes="side-title")
                yield PersonaList(
                    *(self._list_item(p) for p in personas),
                    initial_index=self.current,
                    id="persona-list",
                )
            form = VerticalScroll(id="persona-form", can_focus=False)
            form.display = persona is not None and bool(personas)
            with form:
                yield Static(self._id_line(persona), id="persona-id", markup=False)
                yield Label("Name", classes="field-label")
                yield Input(
                    persona.name,
                    id="persona-name",
                    compact=True,
                    select_on_focus=False,
                    placeholder="the character's name",
                )
                yield Label("Summary", classes="field-label")
                yield TextArea(
                    persona.summary,
                    id="persona-summary",
                    compact=True,
                    classes="-short",
                    placeholder="who they are, in a sentence or two",
                )
                yield Label("Traits (a: add, enter: edit, del: delete)", classes="field-label")
                yield TraitTable(id="trait-table", cursor_type="row", zebra_stripes=True)
                with Horizontal(classes="row-buttons"):
                    yield MouseButton("Add trait", id="add-trait", compact=True)
                    yield MouseButton("Edit trait", id="edit-trait", compact=True)
                    yield MouseButton("Delete trait", id="delete-trait", compact=True)
                yield Label("Speaking style", classes="field-label")
                yield TextArea(
                    persona.style, id="persona-style", compact=True, classes="-short", placeholder="how they talk"
                )
                yield Label("Facts (one per line)", classes="field-label")
                yield TextArea("\n".join(persona.facts), id="persona-facts", compact=True, classes="-medium")
                yield Label("Example lines in their voice (one per line)", classes="field-label")
                yield TextArea("\n".join(persona.examples), id="persona-examples", compact=True, classes="-medium")
            empty = Static(
                "No personas yet.\n\nPress a to add one, or i to import a Character Card "
                "(.json or .png) or a persona list (.txt, one 'I ...' sentence per line).",
                id="persona-empty",
                markup=False,
            )
            empty.display = not personas
            yield empty

    def on_mount(self) -> None:
        # Counts before the text, so they stay in view when the text is cut at 80 columns.
        self.query_one(TraitTable).add_columns("id", "know", "expr", "text", "markers")
        self.refresh_traits()

    def focus_default(self) -> None:
        """Where the keyboard starts in this tab: the persona list."""
        self.screen.set_focus(self.query_one(PersonaList))

    # -- helpers ------------------------------------------------------------------------
    @property
    def session(self):
        return self.session_file.session

    @property
    def persona(self) -> Persona | None:
        if self.current is None or not (0 <= self.current < len(self.session.personas)):
            return None
        return self.session.personas[self.current]

    def changed(self, what: str) -> None:
        self.post_message(SessionChanged(what))

    async def refresh_list(self, select: int | None = None) -> None:
        """Rebuild the list from the session and show persona `select` (or keep the current)."""
        personas = self.session.personas
        list_view = self.query_one(PersonaList)
        if select is None:
            select = self.current if self.current is not None else 0
        self._rebuilding = True
        try:
            await list_view.clear()
            await list_view.extend(self._list_item(p) for p in personas)
            self.current = min(select, len(personas) - 1) if personas else None
            list_view.index = self.current
        finally:
            self._rebuilding = False
        self.show_persona()

    @staticmethod
    def _list_label(persona: Persona) -> str:
        return persona.name or f"({persona.id})"

    def _list_item(self, persona: Persona) -> ListItem:
        return ListItem(Label(self._list_label(persona), markup=False))

    @staticmethod
    def _id_line(persona: Persona) -> str:
        return f"id: {persona.id}    (r renames)"

    def show_persona(self) -> None:
        """Fill the form from the current persona, without those writes counting as edits."""
        persona = self.persona
        self.query_one("#persona-form").display = persona is not None
        self.query_one("#persona-empty").display = persona is None
        if persona is None:
            return
        self.query_one("#persona-id", Static).update(self._id_line(persona))
        with self.prevent(Input.Changed, TextArea.Changed):
            self.query_one("#persona-name", Input).value = persona.name
            for field, text in (
                ("summary", persona.summary),
                ("style", persona.style),
                ("facts", "\n".join(persona.facts)),
                ("examples", "\n".join(persona.examples)),
            ):
                area = self.query_one(f"#persona-{field}", TextArea)
                if area.text != text:
                    area.load_text(text)
        self.refresh_traits()

    def refresh_traits(self, cursor: int | None = None) -> None:
        table = self.query_one(TraitTable)
        persona = self.persona
        table.clear()
        if persona is None:
            return
        for trait in persona.traits:
            table.add_row(
                trait.id,
                str(len(trait.knowledge_probes)),
                str(len(trait.expression_probes)),
                trait.text,
                ", ".join(trait.markers),
            )
        if cursor is not None and persona.traits:
            table.move_cursor(row=min(cursor, len(persona.traits) - 1))

    def _update_list_label(self) -> None:
        persona = self.persona
        list_view = self.query_one(PersonaList)
        if persona is None or self.current >= len(list_view.children):
            return
        item = list_view.children[self.current]
        item.query_one(Label).update(self._list_label(persona))

    def _persona_ids(self, *, excluding: str | None = None) -> set[str]:
        return {p.id for p in self.session.personas if p.id != excluding}

    # -- list ---------------------------------------------------------------------------
    @on(ListView.Highlighted, "#persona-list")
    def _highlighted(self, event: ListView.Highlighted) -> None:
        index = event.list_view.index
        if not self._rebuilding and index is not None and index != self.current:
            self.current = index
            self.show_persona()

    @on(ListView.Selected, "#persona-list")
    def _selected(self, event: ListView.Selected) -> None:
        # A click on a persona: into its form.
        self.screen.set_focus(self.query_one("#persona-name", Input))

    def action_focus_list(self) -> None:
        self.screen.set_focus(self.query_one(PersonaList))

    # -- fields -------------------------------------------------------------------------
    def flush_edit(self, widget: Widget) -> None:
        """Apply the focused field's text now (the app calls this before quitting)."""
        if isinstance(widget, Input) and widget.id == "persona-name":
            self._name_changed(Input.Changed(widget, widget.value))
        elif isinstance(widget, TextArea):
            self._text_changed(TextArea.Changed(widget))

    @on(Input.Changed, "#persona-name")
    def _name_changed(self, event: Input.Changed) -> None:
        persona = self.persona
        if persona is None or persona.name == event.value:
            return
        persona.name = event.value
        self._update_list_label()
        self.changed(f"edited the name of {persona.id}")

    @on(TextArea.Changed)
    def _text_changed(self, event: TextArea.Changed) -> None:
        persona = self.persona
        field = (event.text_area.id or "").removeprefix("persona-")
        if persona is None or field not in ("summary", "style", "facts", "examples"):
            return
        text = event.text_area.text
        if field in ("facts", "examples"):
            value = lines_of(text)
        else:
            value = text.strip()
        if getattr(persona, field) == value:
            return
        setattr(persona, field, value)
        self.changed(f"edited the {field} of {persona.id}")

    # -- personas -----------------------------------------------------------------------
    async def add_persona(self, persona: Persona, what: str) -> None:
        persona.id = unique_id(persona.id, self._persona_ids())
        self.session.personas.append(persona)
        await self.refresh_list(select=len(self.session.personas) - 1)
        self.changed(what)

    async def action_add_persona(self) -> None:
        await self.add_persona(Persona(id="persona", name="New persona"), "added a persona")
        self.screen.set_focus(self.query_one("#persona-name", Input))

    async def action_duplicate_persona(self) -> None:
        persona = self.persona
        if persona is None:
            self.notify("There is no persona to duplicate.", severity="warning")
            return
        twin = copy.deepcopy(persona)
        twin.id = f"{persona.id}-copy"
        twin.name = f"{persona.name} (copy)"
        await self.add_persona(twin, f"duplicated {persona.id}")

    def action_rename_persona(self) -> None:
        persona = self.persona
        if persona is None:
            return
        taken = self._persona_ids(excluding=persona.id)

        def renamed(new_id: str | None) -> None:
            if new_id is None or new_id == persona.id:
                return
            old = persona.id
            persona.id = new_id
            for spec in self.session.datasets:
                if spec.persona == old:
                    spec.persona = new_id
            self.show_persona()
            self.changed(f"renamed persona {old} to {new_id}")

        self.app.push_screen(
            TextPrompt(
                f"Rename persona {persona.id}",
                value=persona.id,
                help="The id names the persona in dataset specs and workspace files; "
                "dataset specs that use it follow the rename.",
                ok_label="Rename",
                check=lambda value: id_problem(value, taken, "persona"),
            ),
            renamed,
        )

    def action_delete_persona(self) -> None:
        persona = self.persona
        if persona is None:
            return
        index = self.current

        async def answered(choice: str) -> None:
            if choice != "yes":
                return
            del self.session.personas[index]
            await self.refresh_list(select=max(index - 1, 0))
            self.changed(f"deleted persona {persona.id}")
            self.notify(f"Deleted persona {persona.name or persona.id}.")

        traits = len(persona.traits)
        self.app.push_screen(
            confirm(
                "Delete persona?",
                f"Delete “{persona.name}” ({persona.id}) and its {traits} trait"
                f"{'' if traits == 1 else 's'}? When the session saves, the version before "
                f"stays in {self.session_file.path.name}.bak.",
            ),
            answered,
        )

    # -- Character Cards ----------------------------------------------------------------
    def action_import_card(self) -> None:
        async def chosen(path_text: str | None) -> None:
            if path_text:
                await self.import_from(Path(path_text).expanduser())

        self.app.push_screen(
            TextPrompt(
                "Import a persona",
                help="A Character Card (.json, or a .png with the card inside) or a plain "
                "persona list (.txt, one 'I ...' sentence per line). Relative paths start in "
                "the current folder.",
                placeholder="path/to/card.json",
                ok_label="Import",
                check=lambda value: None if value else "Type the path of the file to import.",
            ),
            chosen,
        )

    async def import_from(self, path: Path) -> bool:
        """Add the persona in `path`; on a bad file say why and change nothing."""
        from sessions import cards

        try:
            taken = self._persona_ids()
            persona = cards.read_persona_file(path, taken=taken)
        except (ValueError, OSError) as error:
            self.notify(str(error), title="Import failed", severity="error", timeout=10)
            return False
        await self.add_persona(persona, f"imported {path.name}")
        self.notify(f"Imported {persona.name or persona.id} from {path.name} as '{persona.id}'.")
        return True

    def action_export_card(self) -> None:
        persona = self.persona
        if persona is None:
            self.notify("There is no persona to export.", severity="warning")
            return
        default = self.session_file.path.parent / f"{persona.id}.card.json"

        def chosen(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text).expanduser()
            if path.exists():
                self.app.push_screen(
                    confirm("Overwrite?", f"{path} exists. Replace it with this card?", yes="Overwrite"),
                    lambda choice: self.export_to(persona, path) if choice == "yes" else None,
                )
            else:
                self.export_to(persona, path)

        self.app.push_screen(
            TextPrompt(
                f"Export {persona.name or persona.id} as a Character Card V2",
                value=str(default),
                help="A .json path writes a Character Card V2; a .txt path writes a plain persona "
                "list (one sentence per line, as in Synthetic-Persona-Chat).",
                ok_label="Export",
                check=lambda value: None if value else "Type the path of the card to write.",
            ),
            chosen,
        )

    def action_write_probes(self) -> None:
        """Propose probes from the persona's traits and facts; keep them only after review."""
        from evaluators import probe_writer

        persona = self.persona
        if persona is None or not persona.traits:
            self.notify("Add a trait first: probes are written from the traits and facts.", severity="warning")
            return
        self.review_probes(persona, probe_writer.write_probes(persona), "by templates")

    async def action_add_recipe(self) -> None:
        """t: add the measured recipe for this persona (as `persona --recipe ID`): its datasets, a
        LoRA run at the recipe's settings and a traits evaluation against the base."""
        from sessions.demo import add_recipe, recipe_gaps

        persona = self.persona
        if persona is None:
            self.notify("Add a persona first (a).", severity="warning")
            return
        try:
            add_recipe(self.session, persona.id)
        except ValueError as error:
            self.notify(f"{error}.", title="Recipe not added", severity="error", markup=False)
            return
        self.post_message(SessionChanged(f"added the recipe for {persona.id}", save_now=True))
        await self.app.reread_session(["data", "train", "evaluate"])
        run, evaluation = self.session.runs[-1], self.session.evals[-1]
        gaps = recipe_gaps(persona)
        self.notify(
            f"Datasets {', '.join(run.datasets)}; run {run.id} at the recipe's settings; evaluation "
            f"{evaluation.id} against the base.\n"
            + ("".join(f"Before you build: {gap}\n" for gap in gaps))
            + "Next: build each dataset (Data, b), start the run (Train, s), export it (x), "
            + "then run the evaluation (Evaluate, r).",
            title=f"Recipe added for {persona.name or persona.id}",
            severity="warning" if gaps else "information",
            markup=False,
            timeout=20,
        )

    def action_write_probes_by_teacher(self) -> None:
        """P: one of the session's engines writes the probes (as `persona --probes ID --teacher E`),
        off the UI thread; the same review follows."""
        from persona_tui.screens.choice import ChoiceScreen

        persona = self.persona
        if persona is None or not persona.traits:
            self.notify("Add a trait first: probes are written from the traits and facts.", severity="warning")
            return
        engines = [e.id for e in self.session.engines]
        if not engines:
            self.notify(
                "The session has no engine to write probes: add one under [[engines]], or press p for the templates.",
                severity="warning",
                markup=False,
            )
            return
        if len(engines) == 1:
            self.teacher_probes(persona.id, engines[0])
            return

        def chosen(engine_id: str | None) -> None:
            if engine_id and engine_id != "cancel":
                self.teacher_probes(persona.id, engine_id)

        self.app.push_screen(
            ChoiceScreen(
                "Which engine writes the probes?",
                f"Probes for {persona.name or persona.id}, "
                "one request per trait; the templates top up what it leaves short.",
                [*((e, e, "default") for e in engines[:6]), ("cancel", "Cancel", "default")],
            ),
            chosen,
        )

    class ProbesWritten(Message):
        """A teacher's proposals for a persona, or why there are none."""

        def __init__(self, persona_id: str, proposals: list, engine_id: str, error: str = "") -> None:
            super().__init__()
            self.persona_id, self.proposals, self.engine_id, self.error = persona_id, proposals, engine_id, error

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe-teacher")
    def teacher_probes(self, persona_id: str, engine_id: str) -> None:
        from evaluators import probe_writer
        from trainers.data.generate.llm import TeacherError

        persona = copy.deepcopy(self.session.persona(persona_id))
        spec = self.session.engine(engine_id)
        self.app.call_from_thread(self.notify, f"Asking {engine_id!r} for probes, one request per trait…", timeout=4)
        try:
            proposals = probe_writer.probes_by_engine(persona, spec)
        except TeacherError as error:
            self.post_message(self.ProbesWritten(persona_id, [], engine_id, str(error)))
            return
        self.post_message(self.ProbesWritten(persona_id, proposals, engine_id))

    def on_personas_pane_probes_written(self, message: ProbesWritten) -> None:
        persona = self.session.persona(message.persona_id)
        if message.error or persona is None:
            self.notify(
                message.error or f"persona {message.persona_id!r} is gone",
                title="No probes written",
                severity="error",
                markup=False,
                timeout=10,
            )
            return
        self.review_probes(persona, message.proposals, f"by engine {message.engine_id!r}")

    def review_probes(self, persona: Persona, proposals: list, source: str) -> None:
        """Check proposals against the persona's training data and show them; keep them on Keep."""
        from evaluators import probe_writer
        from persona_tui.screens.probe_review import ProbeReview
        from trainers.data import reader as data_reader

        data = data_reader.built_paths(
            self.session_file.workspace, [d.id for d in self.session.datasets if d.persona == persona.id]
        )
        trial = copy.deepcopy(persona)
        for t in trial.traits:
            t.knowledge_probes, t.expression_probes = [], []
        probe_writer.apply(trial, proposals)
        try:
            repeats = probe_writer.training_repeats(trial, data)
        except (OSError, ValueError) as error:
            self.notify(str(error), title="Could not check the training data", severity="error", timeout=10)
            return
        checked = f"checked against {len(data)} built dataset(s)" if data else "no built dataset to check against yet"

        def reviewed(keep: bool | None) -> None:
            if keep:
                added = probe_writer.apply(persona, proposals)
                self.refresh_traits(cursor=0)
                self.changed(f"added {added} probes to {persona.id}")
                self.notify(f"Kept {added} probes.")

        self.app.push_screen(ProbeReview(persona.name or persona.id, proposals, repeats, checked, source), reviewed)

    def export_to(self, persona: Persona, path: Path) -> bool:
        from sessions import cards

        try:
            cards.write_persona_file(persona, path)
        except (ValueError, OSError) as error:
            self.notify(str(error), title="Export failed", severity="error", timeout=10)
            return False
        self.notify(f"Wrote {path}.")
        return True

    # -- traits -------------------------------------------------------------------------
    def _trait_index(self) -> int | None:
        persona = self.persona
        if persona is None or not persona.traits:
            return None
        row = self.query_one(TraitTable).cursor_row
        return min(max(row, 0), len(persona.traits) - 1)

    def _trait_id_check(self, persona: Persona, own_id: str | None):
        taken = {t.id for t in persona.traits if t.id != own_id}
        return lambda value: id_problem(value, taken, "trait")

    def add_trait(self) -> None:
        persona = self.persona
        if persona is None:
            return
        trait = Trait(id=unique_id("trait", {t.id for t in persona.traits}), text="")

        def added(result: Trait | None) -> None:
            if result is None:
                return
            persona.traits.append(result)
            self.refresh_traits(cursor=len(persona.traits) - 1)
            self.changed(f"added trait {result.id} to {persona.id}")

        self.app.push_screen(TraitEditor(trait, self._trait_id_check(persona, None), new=True), added)

    def edit_trait(self) -> None:
        persona = self.persona
        index = self._trait_index()
        if persona is None:
            return
        if index is None:
            self.add_trait()
            return
        trait = persona.traits[index]

        def edited(result: Trait | None) -> None:
            if result is None or result == trait:
                return
            persona.traits[index] = result
            self.refresh_traits(cursor=index)
            self.changed(f"edited trait {result.id} of {persona.id}")

        self.app.push_screen(TraitEditor(trait, self._trait_id_check(persona, trait.id)), edited)

    def delete_trait(self) -> None:
        persona = self.persona
        index = self._trait_index()
        if persona is None or index is None:
            return
        trait = persona.traits[index]

        def answered(choice: str) -> None:
            if choice == "yes":
                del persona.traits[index]
                self.refresh_traits(cursor=index)
                self.changed(f"deleted trait {trait.id} of {persona.id}")

        self.app.push_screen(confirm("Delete trait?", f"{trait.id}: {trait.text}"), answered)

    @on(TraitAction)
    def _trait_action(self, event: TraitAction) -> None:
        event.stop()
        {"add": self.add_trait, "delete": self.delete_trait}[event.action]()

    @on(DataTable.RowSelected, "#trait-table")
    def _trait_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.edit_trait()

    @on(Button.Pressed, ".row-buttons Button")
    def _trait_button(self, event: Button.Pressed) -> None:
        event.stop()
        {"add-trait": self.add_trait, "edit-trait": self.edit_trait, "delete-trait": self.delete_trait}[
            event.button.id
        ]()
