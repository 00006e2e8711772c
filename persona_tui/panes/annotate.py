"""Annotate pane: label outputs one at a time, each label saved the moment it is given.

The queue, the labels, undo, blind order and export live in `evaluators.annotation`; this pane
shows the current output and turns keys into calls there. After every change it posts
`SessionChanged(save_now=True)`, so the app writes the session at once (atomically): a killed
terminal loses no label.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, Tabs

from evaluators import annotation as core
from evaluators.agreement import agreement_report
from evaluators.annotation import LABEL_TEXT, Labelling, Queue, QueueItem
from evaluators.tables import agreement_tables
from persona_tui.messages import SessionChanged
from persona_tui.screens.report import ReportScreen
from persona_tui.screens.text_prompt import TextPrompt

LABEL_STYLE = {"expressed": "bold green", "not_shown": "yellow", "contradicted": "bold red"}
LABEL_WIDTH = max(len(t) for t in LABEL_TEXT.values())


class AnnotatePane(Widget, can_focus=True):
    """The current output of the queue: prompt, reply, the persona's traits and their labels."""

    BINDINGS = [
        Binding("e", "label('expressed')", "label", key_display="e/n/c"),
        Binding("n", "label('not_shown')", "not shown", show=False),
        Binding("c", "label('contradicted')", "contradicted", show=False),
        Binding("backspace,delete", "label(None)", "clear label", show=False),
        Binding("j,down", "trait(1)", "next trait", show=False),
        Binding("k,up", "trait(-1)", "previous trait", show=False),
        Binding("1", "rate(1)", "rate", key_display="1-5"),
        *(Binding(str(n), f"rate({n})", f"consistency {n}", show=False) for n in range(2, 6)),
        Binding("0", "rate(0)", "clear rating", show=False),
        Binding("t", "note", "note"),
        Binding("s", "skip", "skip"),
        Binding("u", "undo", "undo"),
        Binding("right,l,enter", "move(1)", "item", key_display="←/→"),
        Binding("left,h", "move(-1)", "previous item", show=False),
        Binding("b", "blind", "blind", show=False),
        Binding("a", "annotator", "annotator", show=False),
        Binding("x", "export", "export", show=False),
        Binding("g", "agreement", "agreement", show=False),
        Binding("r", "reload", "reload", show=False),
        Binding("pagedown,space", "scroll_reply(1)", "scroll reply", show=False),
        Binding("pageup", "scroll_reply(-1)", "scroll reply up", show=False),
        Binding("escape", "leave", "tabs", show=False),
    ]

    # Set by the app before mounting.
    session_file = None

    def __init__(self, *, annotator: str | None = None, blind: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.queue = Queue()
        self.order: list[QueueItem] = []
        self.pos = 0
        self.trait_index = 0
        self.blind = blind
        self._annotator = annotator
        self.labelling: Labelling | None = None
        self._told_problems: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="annotate-status", markup=False)
        yield Static("", id="annotate-meta", markup=False)
        with VerticalScroll(id="annotate-prompt-box", can_focus=False) as box:
            box.border_title = "Prompt"
            yield Static("", id="annotate-prompt", markup=False)
        with VerticalScroll(id="annotate-reply-box", can_focus=False) as box:
            box.border_title = "Reply"
            yield Static("", id="annotate-reply", markup=False)
        traits = Static("", id="annotate-traits", markup=False)
        traits.border_title = "Traits: e expressed · n not shown · c contradicted · j/k move"
        yield traits
        yield Static("", id="annotate-rating", markup=False)
        yield Static("", id="annotate-empty", markup=False)

    def on_mount(self) -> None:
        self.labelling = Labelling(self.session, core.default_annotator(self._annotator))
        self.reload(first_unlabelled=True, tell=False)

    def configure(self, *, annotator: str | None = None, blind: bool | None = None) -> None:
        """Who labels and whether blind (from the command line); starts at their first unlabelled output."""
        if annotator:
            self.labelling.annotator = annotator
        if blind is not None:
            self.blind = blind
        self._reorder(None)
        self.pos = self._next_unlabelled(0, include_current=True)
        self._enter_item()
        self.refresh_view()

    def on_show(self) -> None:
        self.focus()
        # Outputs arrive while eval jobs run and chat sends replies: look again on every visit.
        self.reload()

    ITEM_ACTIONS = frozenset({"label", "trait", "rate", "note", "skip", "move", "scroll_reply"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With nothing to label these keys are hidden and go on to the app: the digits switch tabs.
        if action in self.ITEM_ACTIONS and self.item is None:
            return False
        return True

    # -- state --------------------------------------------------------------------------
    @property
    def session(self):
        return self.session_file.session

    @property
    def annotator(self) -> str:
        return self.labelling.annotator if self.labelling else core.default_annotator(self._annotator)

    @property
    def item(self) -> QueueItem | None:
        return self.order[self.pos] if 0 <= self.pos < len(self.order) else None

    def reload(self, first_unlabelled: bool = False, tell: bool = True) -> None:
        """Build the queue again from disk, staying on the same output where it still exists.

        `tell` shows what was left out (once each); not before the tab is first visited.
        """
        current = self.item.key if self.item else None
        self.queue = core.build_queue(self.session, self.session_file.workspace)
        new = [p for p in self.queue.problems if p not in self._told_problems]
        if new and tell:
            self._told_problems += new
            shown = new[:3] + ([f"... and {len(new) - 3} more"] if len(new) > 3 else [])
            self.notify(
                "\n".join(shown), title="Some outputs were left out", severity="warning", timeout=8, markup=False
            )
        self._reorder(current)
        if first_unlabelled or current is None:
            self.pos = self._next_unlabelled(0, include_current=True)
            self._enter_item()
        self.refresh_view()

    def _reorder(self, keep: str | None) -> None:
        self.order = self.queue.ordered(self.annotator, self.blind)
        keys = [i.key for i in self.order]
        self.pos = keys.index(keep) if keep in keys else min(self.pos, max(len(self.order) - 1, 0))

    def _next_unlabelled(self, start: int, include_current: bool = False) -> int:
        """The position of the first unlabelled output from `start` on (wrapping), else `start`."""
        n = len(self.order)
        if not n:
            return 0
        for step in range(0 if include_current else 1, n + (1 if include_current else 0)):
            i = (start + step) % n
            if not self.labelling.is_labelled(self.order[i].key):
                return i
        return start

    def _enter_item(self) -> None:
        """On a new output, select its first unlabelled trait (the probed one comes first)."""
        item = self.item
        self.trait_index = 0
        if item is None:
            return
        ann = self.labelling.get(item.key)
        labels = ann.trait_labels if ann else {}
        traits = item.traits()
        self.trait_index = next((i for i, t in enumerate(traits) if t.id not in labels), 0)

    def changed(self, what: str) -> None:
        self.post_message(SessionChanged(what, save_now=True))

    # -- drawing ------------------------------------------------------------------------
    def refresh_view(self) -> None:
        self.refresh_bindings()
        item = self.item
        empty = item is None
        for widget in self.query(
            "#annotate-meta, #annotate-prompt-box, #annotate-reply-box, #annotate-traits, #annotate-rating"
        ):
            widget.display = not empty
        self.query_one("#annotate-empty").display = empty
        labelled, total = self.labelling.progress(i.key for i in self.order)
        blind = "on" if self.blind else "off"
        status = Text.assemble(
            (f"{labelled} / {total} labelled", "bold"),
            f" · item {self.pos + 1 if total else 0}/{total}",
            " · annotator ",
            (self.annotator, "bold"),
            " (a)",
            " · blind ",
            (blind, "bold" if self.blind else ""),
            " (b)",
            " · x export",
        )
        status.no_wrap = True
        status.overflow = "ellipsis"
        self.query_one("#annotate-status", Static).update(status)
        if empty:
            self.query_one("#annotate-empty", Static).update(
                "Nothing to label yet.\n\nOutputs arrive here from evaluation jobs (the Evaluate "
                "tab, or 'persona-tui eval SESSION --eval ID') and from chat replies you send to "
                "annotation in the Chat tab. Press r to look again."
            )
            return
        ann = self.labelling.get(item.key)
        meta = Text(no_wrap=True, overflow="ellipsis")
        described = item.describe(self.blind)
        parts = []
        if "output" in described:
            parts.append(("output ", described["output"]))
        if "model" in described:
            parts.append(("model ", described["model"]))
        if "persona" in described:
            parts.append(("persona ", described["persona"]))
        if "trait" in described:
            parts.append(("probe of ", described["trait"]))
        if "turn" in described:
            parts.append(("turn ", described["turn"]))
        if "conversation" in described:
            parts.append(("conversation ", described["conversation"]))
        if self.blind:
            parts.insert(0, ("", "blind: model hidden"))
        for n, (name, value) in enumerate(parts):
            if n:
                meta.append(" · ", "dim")
            meta.append(name, "dim")
            meta.append(value, "bold")
        self.query_one("#annotate-meta", Static).update(meta)
        self.query_one("#annotate-prompt", Static).update(item.prompt.strip() or "(no prompt)")
        self.query_one("#annotate-reply", Static).update(item.reply.strip() or "(empty reply)")
        self.query_one("#annotate-reply-box").scroll_home(animate=False)
        self.query_one("#annotate-prompt-box").scroll_home(animate=False)
        self._draw_traits(item, ann)
        self._draw_rating(ann)

    def _draw_traits(self, item: QueueItem, ann) -> None:
        traits = item.traits()
        labels = ann.trait_labels if ann else {}
        widget = self.query_one("#annotate-traits", Static)
        if not traits:
            why = (
                f"persona {item.persona_id!r} is not in this session"
                if item.persona_id
                else "this output names no persona"
            )
            widget.update(Text(f"No traits: {why}. Rate it 1-5 and add a note.", style="dim"))
            return
        self.trait_index = min(self.trait_index, len(traits) - 1)
        id_width = min(max(len(t.id) for t in traits), 20)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, trait in enumerate(traits):
            selected = i == self.trait_index
            label = labels.get(trait.id)
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append("▶ " if selected else "  ", "bold")
            shown = LABEL_TEXT.get(label, "·") if label else "·"
            line.append(shown.ljust(LABEL_WIDTH) + "  ", LABEL_STYLE.get(label, "dim"))
            line.append(trait.id[:id_width].ljust(id_width) + "  ", "bold" if selected else "")
            line.append(trait.text.replace("\n", " "), "" if selected else "dim")
            if selected:
                line.stylize("reverse")
            if i:
                text.append("\n")
            text.append_text(line)
        widget.update(text)

    def _draw_rating(self, ann) -> None:
        rating = ann.consistency if ann else 0
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("Consistency ", "dim")
        text.append("★" * rating, "bold yellow")
        text.append("☆" * (5 - rating), "dim")
        text.append(f" {rating}/5" if rating else " not rated", "bold" if rating else "dim")
        text.append("   Note ", "dim")
        note = ann.note if ann else ""
        text.append(note.replace("\n", " ") if note else "(t to write one)", "" if note else "dim")
        self.query_one("#annotate-rating", Static).update(text)

    # -- actions ------------------------------------------------------------------------
    def _traits(self) -> list:
        return self.item.traits() if self.item else []

    def action_label(self, label: str | None) -> None:
        item = self.item
        traits = self._traits()
        if item is None:
            return
        if not traits:
            self.notify("This output has no persona traits to label; rate it 1-5 instead.", severity="warning")
            return
        trait = traits[min(self.trait_index, len(traits) - 1)]
        before = self.labelling.get(item.key)
        old = before.trait_labels.get(trait.id) if before else None
        if old == label:
            return
        ann = self.labelling.label_trait(item.key, trait.id, label, blind=self.blind)
        what = (
            f"labelled {trait.id} {label} on {item.key}" if label else f"cleared the label of {trait.id} on {item.key}"
        )
        if label is not None:
            labels = ann.trait_labels if ann else {}
            n = len(traits)
            # Go on to the next trait still without a label, if there is one.
            self.trait_index = next(
                (
                    (self.trait_index + s) % n
                    for s in range(1, n)
                    if traits[(self.trait_index + s) % n].id not in labels
                ),
                self.trait_index,
            )
        self.changed(what)
        self.refresh_view()

    def action_trait(self, step: int) -> None:
        traits = self._traits()
        if traits:
            self.trait_index = max(0, min(len(traits) - 1, self.trait_index + step))
            self.refresh_view()

    def action_rate(self, value: int) -> None:
        item = self.item
        if item is None:
            return
        before = self.labelling.get(item.key)
        if (before.consistency if before else 0) == value:
            return
        self.labelling.rate(item.key, value, blind=self.blind)
        self.changed(f"rated {item.key} {value}/5" if value else f"cleared the rating of {item.key}")
        self.refresh_view()

    def action_note(self) -> None:
        item = self.item
        if item is None:
            return
        ann = self.labelling.get(item.key)

        def written(text: str | None) -> None:
            if text is None or self.item is None or self.item.key != item.key:
                return
            if text == (ann.note if ann else ""):
                return
            self.labelling.set_note(item.key, text)
            self.changed(f"wrote a note on {item.key}")
            self.refresh_view()

        self.app.push_screen(
            TextPrompt(
                "Note on this output",
                value=ann.note if ann else "",
                help="Anything the labels do not say. Saved with your labels; empty removes it.",
                ok_label="Save note",
            ),
            written,
        )

    def action_move(self, step: int) -> None:
        if not self.order:
            return
        new = max(0, min(len(self.order) - 1, self.pos + step))
        if new == self.pos:
            self.notify("That is the last output." if step > 0 else "That is the first output.", timeout=2)
            return
        self.pos = new
        self._enter_item()
        self.refresh_view()

    def action_skip(self) -> None:
        if not self.order:
            return
        new = self._next_unlabelled(self.pos)
        if new == self.pos:
            self.notify("No other output is waiting for your labels.", timeout=3)
            return
        self.pos = new
        self._enter_item()
        self.refresh_view()

    def action_undo(self) -> None:
        key = self.labelling.undo()
        if key is None:
            self.notify("Nothing to undo.", timeout=2)
            return
        keys = [i.key for i in self.order]
        if key in keys and keys.index(key) != self.pos:
            self.pos = keys.index(key)
            self._enter_item()
        self.changed(f"undid a label on {key}")
        self.refresh_view()

    def action_blind(self) -> None:
        self.blind = not self.blind
        self._reorder(self.item.key if self.item else None)
        self.refresh_view()
        self.notify(
            "Blind: the model is hidden and the order shuffled for you."
            if self.blind
            else "Blind off: models shown, outputs in their order.",
            timeout=3,
        )

    def action_annotator(self) -> None:
        def chosen(name: str | None) -> None:
            if not name or name == self.annotator:
                return
            self.configure(annotator=name)
            self.notify(f"Labelling as {name}.")

        self.app.push_screen(
            TextPrompt(
                "Who is labelling?",
                value=self.annotator,
                help="Labels are kept per output and per annotator, so several people can label the "
                "same queue. The default comes from --annotator, $PERSONA_TUI_ANNOTATOR or your user name.",
                ok_label="Label as",
                check=lambda v: None if v.strip() else "Type a name.",
            ),
            chosen,
        )

    def action_export(self) -> None:
        path = self.session_file.path
        default = path.with_name(f"{path.stem}.labels.jsonl")

        def chosen(text: str | None) -> None:
            if text:
                self.export_to(Path(text).expanduser())

        self.app.push_screen(
            TextPrompt(
                "Export labels as JSON Lines",
                value=str(default),
                help="Every annotator's labels, one line per output and annotator, with its prompt, "
                "reply and model. An existing file is replaced.",
                ok_label="Export",
                check=lambda v: None if v else "Type the path of the file to write.",
            ),
            chosen,
        )

    def export_to(self, path: Path) -> bool:
        try:
            n = core.export_jsonl(self.session, path, self.queue)
        except ValueError as error:
            self.notify(str(error), title="Export failed", severity="error", timeout=10, markup=False)
            return False
        self.notify(f"Wrote {n} label{'' if n == 1 else 's'} to {path}.", markup=False)
        return True

    def action_agreement(self) -> None:
        """Judge vs people (kappa per trait) and metrics vs people (rho), from the labels so far."""
        self._agreement(list(self.session.annotations), self.session_file.workspace)

    @work(thread=True, exclusive=True, exit_on_error=False, group="annotate-agreement")
    def _agreement(self, annotations: list, workspace: Path) -> None:
        # Reads every eval job's outputs.jsonl: off the UI thread; the screen is made on it.
        try:
            report = agreement_report(annotations, workspace)
            renderables = [*report["problems"], *agreement_tables(report)]
        except Exception as error:  # noqa: BLE001 - a worker's error would otherwise vanish
            self.app.call_from_thread(
                self.notify,
                f"Could not compute the agreement: {error}",
                title="Agreement",
                severity="error",
                markup=False,
            )
            return
        self.app.call_from_thread(
            lambda: self.app.push_screen(ReportScreen("Agreement with people's labels (esc closes)", renderables))
        )

    def action_reload(self) -> None:
        self.reload()

    def action_scroll_reply(self, step: int) -> None:
        box = self.query_one("#annotate-reply-box", VerticalScroll)
        if step > 0:
            box.scroll_page_down()
        else:
            box.scroll_page_up()

    def action_leave(self) -> None:
        """Hand the keys back to the tab bar, where the digits switch tabs again."""
        tabs = self.app.query(Tabs)
        if tabs:
            tabs.first().focus()
