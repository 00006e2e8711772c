"""Chat pane: one or two engines side by side, replies streaming as they are generated.

Top: engine A and engine B (B may be "none") — the base model, a run's adapter (transformers),
an export's GGUF (with its LoRA GGUF), any engine of the session or any endpoint typed as an
engine reference (ctrl+e); the persona and the switch that puts it in the system prompt; the
sampling settings (temperature, top-p, max tokens, seed), used unchanged by both columns. Middle:
one transcript column per engine. Bottom: the message line.

The same user message goes to both engines with the same settings and seed. Each reply runs in a
thread worker that only posts messages (`ReplyProgress`, merged while the app is busy, then
`ReplyDone`); the app thread changes the widgets. Escape stops the replies mid-way: the worker
sees the stop flag between tokens and closes the engine's stream, which ends generation. Every
turn is appended to `<workspace>/chats/<id>.jsonl`; F2 / F3 send column A's / B's last reply to
the annotation queue. Engines are opened in the worker the first time they are used and kept
until the pane goes away.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static
from textual.worker import get_current_worker

from persona_tui.conversation import (
    REF_HELP,
    ChatLog,
    EngineRefError,
    build_messages,
    engine_choices,
    engine_from_ref,
    failed_exports,
    persona_prompt,
)

COLUMNS = ("a", "b")
NONE = "none"
CHOICES_S = 2.0  # how often the workspace is looked at for new (or failed) exports


@dataclass
class Turn:
    user: str
    reply: str = ""
    state: str = "waiting"  # waiting | loading | streaming | done | stopped | error
    error: str = ""
    seconds: float = 0.0


@dataclass
class Column:
    ref: str = NONE
    turns: list[Turn] = field(default_factory=list)

    def history(self) -> list[dict[str, str]]:
        """Finished exchanges as chat messages (an errored or empty reply is left out)."""
        out = []
        for t in self.turns:
            if t.state in ("done", "stopped") and t.reply:
                out += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.reply}]
        return out


class ChatPane(Vertical):
    """Side-by-side streaming chat with one or two engines."""

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+e", "engine_ref", "Engine…"),
        Binding("ctrl+o", "serve", "Serve…"),
        Binding("f2", "annotate('a')", "A→annotate"),
        Binding("f3", "annotate('b')", "B→annotate"),
    ]

    session_file = None  # set by the app before mounting

    class ReplyProgress(Message):
        """The reply so far; a newer one for the same column and turn replaces a pending one."""

        def __init__(self, column: str, turn: int, text: str, state: str = "streaming") -> None:
            super().__init__()
            self.column, self.turn, self.text, self.state = column, turn, text, state

        def can_replace(self, message: Message) -> bool:
            return (
                isinstance(message, ChatPane.ReplyProgress)
                and message.column == self.column
                and message.turn == self.turn
            )

    class ReplyDone(Message):
        def __init__(
            self, column: str, turn: int, text: str, state: str, error: str = "", seconds: float = 0.0
        ) -> None:
            super().__init__()
            self.column, self.turn, self.text, self.state, self.error, self.seconds = (
                column,
                turn,
                text,
                state,
                error,
                seconds,
            )

    class ChoicesFound(Message):
        """The engines the session offers now, and the exports that failed (never offered)."""

        def __init__(self, choices: list[tuple[str, str]], failed: list[tuple[str, str]]) -> None:
            super().__init__()
            self.choices, self.failed = choices, failed

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChatPane.ChoicesFound)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failed: dict[str, str] = {}  # export job id -> why it failed (a failed verification)
        self.columns = {c: Column() for c in COLUMNS}
        self.engines: dict[str, Any] = {}
        self._engine_lock = threading.Lock()
        self._stop = {c: threading.Event() for c in COLUMNS}
        self.chat_log: ChatLog | None = None
        self.turn = 0
        self._choices: list[tuple[str, str]] = []

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        self._choices = [(c.label, c.ref) for c in engine_choices(self.session, self.workspace)]
        with Horizontal(id="chat-engines", classes="chat-row"):
            yield Label("A", classes="chat-label")
            yield Select(
                self._options("a"), id="engine-a", allow_blank=False, compact=True, tooltip="engine of column A"
            )
            yield Label("B", classes="chat-label")
            yield Select(
                self._options("b"),
                value=NONE,
                id="engine-b",
                allow_blank=False,
                compact=True,
                tooltip="engine of column B (or none)",
            )
        with Horizontal(id="chat-settings", classes="chat-row"):
            yield Select(
                [], id="chat-persona", prompt="persona", compact=True, tooltip="the persona of the system prompt"
            )
            yield Checkbox(
                "on", False, id="persona-on", compact=True, tooltip="the persona in the system prompt, on or off"
            )
            yield Label("temp", classes="chat-label")
            yield Input("0.7", id="temperature", compact=True, restrict=r"[0-9.]*", tooltip="temperature (0 = greedy)")
            yield Label("top-p", classes="chat-label")
            yield Input("0.95", id="top-p", compact=True, restrict=r"[0-9.]*", tooltip="nucleus sampling")
            yield Label("max", classes="chat-label")
            yield Input("256", id="max-tokens", compact=True, restrict=r"[0-9]*", tooltip="longest reply in tokens")
            yield Label("seed", classes="chat-label")
            yield Input("42", id="seed", compact=True, restrict=r"-?[0-9]*", tooltip="the seed both engines use")
        with Horizontal(id="chat-columns"):
            for c in COLUMNS:
                with Vertical(id=f"col-{c}", classes="chat-column"):
                    yield Static("", id=f"title-{c}", classes="chat-title", markup=False)
                    yield VerticalScroll(id=f"transcript-{c}", classes="chat-transcript")
        yield Input(placeholder="Message (Enter sends, Esc stops, ctrl+n new chat)", id="chat-input")
        yield Static("", id="chat-status", markup=False)

    def on_mount(self) -> None:
        self.columns["a"].ref = str(self.query_one("#engine-a", Select).value)
        personas = [(p.name or p.id, p.id) for p in self.session.personas]
        select = self.query_one("#chat-persona", Select)
        select.set_options(personas)
        if personas:
            select.value = personas[0][1]
        self._titles()
        self._status("A and B: same message, settings, seed. ctrl+e: other engine. F2/F3: annotate.")
        self.watch_exports()

    def on_unmount(self) -> None:
        for c in COLUMNS:
            self._stop[c].set()
        engines, self.engines = dict(self.engines), {}
        for engine in engines.values():
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing on the way out must not raise
                pass

    @property
    def session(self):
        return self.session_file.session

    @property
    def workspace(self):
        return self.session_file.workspace

    # -- engines --------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-choices")
    def watch_exports(self) -> None:
        """Look at the workspace every few seconds: an export offers its GGUFs the moment it is
        verified; one that failed is reported and not offered."""
        worker = get_current_worker()
        last: tuple[Any, Any] | None = None
        while not worker.is_cancelled:
            try:
                found = (
                    [(c.label, c.ref) for c in engine_choices(self.session, self.workspace)],
                    failed_exports(self.workspace),
                )
            except (OSError, ValueError):
                found = last
            if found is not None and found != last:
                last = found
                self.post_message(self.ChoicesFound(*found))
            time.sleep(CHOICES_S)

    def on_chat_pane_choices_found(self, message: ChoicesFound) -> None:
        known = {ref for _, ref in self._choices}
        new = [(label, ref) for label, ref in message.choices if ref not in known and ref.startswith("export:")]
        for job_id, why in message.failed:
            if job_id not in self.failed:
                self.failed[job_id] = why
                self.notify(
                    f"{job_id}: {why}", title="Export failed: not offered", severity="error", markup=False, timeout=10
                )
        if new:
            self.refresh_choices(message.choices)
            self.notify("\n".join(label for label, _ in new), title="Verified export ready to chat with", markup=False)

    def refresh_choices(self, choices: list[tuple[str, str]] | None = None) -> None:
        """Fill both engine selects from the session and its workspace (runs, exports)."""
        if choices is None:
            choices = [(c.label, c.ref) for c in engine_choices(self.session, self.workspace)]
        extra = [(label, ref) for label, ref in self._choices if ref not in {r for _, r in choices}]
        self._choices = list(choices) + extra
        for c in COLUMNS:
            select = self.query_one(f"#engine-{c}", Select)
            current = select.value if select.value not in (Select.BLANK, None) else None
            options = self._options(c)
            select.set_options(options)
            refs = [r for _, r in options]
            select.value = current if current in refs else (NONE if c == "b" else refs[0])

    def _options(self, column: str) -> list[tuple[Text, str]]:
        """Select options on one line each (a long label is cut with an ellipsis, never wrapped)."""
        options = list(self._choices) + ([("none", NONE)] if column == "b" else [])
        return [(Text(label, no_wrap=True, overflow="ellipsis"), ref) for label, ref in options]

    def add_engine_choice(self, ref: str, label: str = "") -> None:
        """Offer an engine reference typed by hand (checked first: EngineRefError)."""
        engine_from_ref(ref, self.session, self.workspace)
        if ref not in [r for _, r in self._choices]:
            self._choices.append((label or ref, ref))
        self.refresh_choices()

    def set_engines(self, a: str, b: str = NONE) -> None:
        for c, ref in zip(COLUMNS, (a, b)):
            if ref != NONE and ref not in [r for _, r in self._choices]:
                self.add_engine_choice(ref)
            self.query_one(f"#engine-{c}", Select).value = ref

    @on(Select.Changed, "#engine-a, #engine-b")
    def _engine_changed(self, event: Select.Changed) -> None:
        column = event.select.id.removeprefix("engine-")
        ref = str(event.value) if event.value not in (Select.BLANK, None) else NONE
        if ref != self.columns[column].ref:
            self.columns[column].ref = ref
            self._titles()

    def action_serve(self) -> None:
        """Serve the export of column A, else of column B (an OpenAI-compatible server, as a service
        job that outlives the app)."""
        from persona_tui.screens.serve import ServeScreen

        ref = next((self.columns[c].ref for c in COLUMNS if self.columns[c].ref.startswith("export:")), "")
        if not ref:
            self.notify(
                "Pick an export in column A or B to serve it (exports appear once verified).", severity="warning"
            )
            return
        self.app.push_screen(ServeScreen(self.session_file, ref))

    def action_engine_ref(self) -> None:
        from persona_tui.screens.text_prompt import TextPrompt

        def check(text: str) -> str | None:
            try:
                engine_from_ref(text, self.session, self.workspace)
            except EngineRefError as e:
                return str(e)
            return None

        def done(ref: str | None) -> None:
            if ref:
                self.add_engine_choice(ref)
                target = "b" if self.columns["a"].ref != NONE and self.columns["b"].ref == NONE else "a"
                self.query_one(f"#engine-{target}", Select).value = ref

        self.app.push_screen(TextPrompt("Engine reference", help=f"Give {REF_HELP}.", check=check), done)

    def _open_engine(self, ref: str) -> Any:
        """The engine for `ref`, opened once (from a worker thread: loading takes seconds)."""
        with self._engine_lock:
            if ref not in self.engines:
                from engines import open_engine

                self.engines[ref] = open_engine(engine_from_ref(ref, self.session, self.workspace))
            return self.engines[ref]

    # -- settings -------------------------------------------------------------------------
    def sampling(self) -> dict[str, Any]:
        """The settings both columns use; ValueError naming the field that is wrong."""

        def number(wid: str, cast, what: str):
            text = self.query_one(f"#{wid}", Input).value.strip()
            try:
                return cast(text)
            except ValueError:
                raise ValueError(f"{what} is {text!r}; give a number.") from None

        s = {
            "temperature": number("temperature", float, "temperature"),
            "top_p": number("top-p", float, "top-p"),
            "max_tokens": number("max-tokens", int, "max tokens"),
            "seed": number("seed", int, "seed"),
        }
        if s["max_tokens"] < 1:
            raise ValueError("max tokens must be at least 1.")
        if not 0 < s["top_p"] <= 1:
            raise ValueError(f"top-p must be in (0, 1], not {s['top_p']}.")
        return s

    def persona_id(self) -> str:
        value = self.query_one("#chat-persona", Select).value
        return "" if value in (Select.BLANK, None) else str(value)

    def persona_on(self) -> bool:
        return self.query_one("#persona-on", Checkbox).value

    def system_prompt(self) -> str:
        if not self.persona_on() or not self.persona_id():
            return ""
        persona = self.session.persona(self.persona_id())
        return persona_prompt(persona) if persona else ""

    # -- sending --------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.send(event.value):
            event.input.value = ""

    def busy(self) -> bool:
        return any(w.is_running for w in self.workers if w.group.startswith("reply-"))

    def send(self, text: str) -> bool:
        """Send `text` to every chosen engine; False (and a notice) when it cannot go now."""
        text = text.strip()
        if not text:
            return False
        if self.busy():
            self.notify("A reply is still coming: wait, or press Esc to stop it.", severity="warning")
            return False
        try:
            sampling = self.sampling()
        except ValueError as e:
            self.notify(str(e), title="Sampling settings", severity="error", markup=False)
            return False
        active = [c for c in COLUMNS if self.columns[c].ref != NONE]
        if not active:
            self.notify("Choose an engine first.", severity="warning")
            return False
        if self.chat_log is None:
            self.chat_log = ChatLog(self.workspace)
        self.turn += 1
        system = self.system_prompt()
        self.chat_log.append(
            role="user",
            content=text,
            turn=self.turn,
            persona=self.persona_id(),
            persona_on=bool(system),
            sampling=sampling,
            engines=[self.columns[c].ref for c in active],
        )
        for c in active:
            column = self.columns[c]
            messages = build_messages(column.history(), text, system)
            column.turns.append(Turn(text, state="loading" if column.ref not in self.engines else "waiting"))
            self._add_turn_widgets(c, len(column.turns) - 1)
            self._stop[c].clear()
            self.run_worker(
                partial(self._reply, c, len(column.turns) - 1, column.ref, messages, sampling),
                name=f"reply {c.upper()} turn {self.turn}",
                group=f"reply-{c}",
                thread=True,
                exclusive=True,
                exit_on_error=False,
            )
        self._status()
        return True

    def _reply(
        self, column: str, index: int, ref: str, messages: list[dict[str, str]], sampling: dict[str, Any]
    ) -> None:
        """Generate one column's reply in a thread; only messages go back to the app."""
        t0 = time.monotonic()
        stop = self._stop[column]
        text, state, error = "", "done", ""
        try:
            if ref not in self.engines:
                self.post_message(self.ReplyProgress(column, index, "", "loading"))
            engine = self._open_engine(ref)
            stream = engine.stream_chat(messages, **sampling)
            try:
                for piece in stream:
                    text += piece
                    self.post_message(self.ReplyProgress(column, index, text))
                    if stop.is_set():
                        state = "stopped"
                        break
            finally:
                stream.close()  # ends generation in the engine (llama.cpp, transformers, HTTP)
            if stop.is_set():
                state = "stopped"
        except Exception as e:  # noqa: BLE001 - any engine failure is shown in its column
            state, error = "error", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        self.post_message(self.ReplyDone(column, index, text, state, error, time.monotonic() - t0))

    def on_chat_pane_reply_progress(self, message: ReplyProgress) -> None:
        turns = self.columns[message.column].turns
        if message.turn >= len(turns):
            return  # the conversation was cleared (ctrl+n) while this reply was coming
        turn = turns[message.turn]
        if turn.state in ("done", "stopped", "error"):
            return
        turn.reply, turn.state = message.text, message.state
        self._show_turn(message.column, message.turn)

    def on_chat_pane_reply_done(self, message: ReplyDone) -> None:
        column = self.columns[message.column]
        if message.turn >= len(column.turns):
            return
        turn = column.turns[message.turn]
        turn.reply, turn.state, turn.error, turn.seconds = message.text, message.state, message.error, message.seconds
        self._show_turn(message.column, message.turn)
        if self.chat_log is not None:
            self.chat_log.append(
                role="assistant",
                content=message.text,
                turn=self.turn,
                column=message.column,
                engine=column.ref,
                state=message.state,
                stopped=message.state == "stopped",
                error=message.error,
                seconds=round(message.seconds, 2),
            )
        self._status()

    def action_stop(self) -> None:
        if not self.busy():
            return
        for c in COLUMNS:
            self._stop[c].set()
        self._status("stopping…")

    def action_new_chat(self) -> None:
        self.action_stop()
        self.chat_log = None
        self.turn = 0
        for c in COLUMNS:
            self.columns[c].turns.clear()
            self.query_one(f"#transcript-{c}", VerticalScroll).remove_children()
        self._status("new conversation")

    def action_annotate(self, column: str) -> None:
        col = self.columns[column]
        last = next((t for t in reversed(col.turns) if t.state in ("done", "stopped") and t.reply), None)
        if last is None:
            self.notify(f"Column {column.upper()} has no reply to send yet.", severity="warning")
            return
        from evaluators.annotation import send_to_annotation

        key = send_to_annotation(
            self.workspace,
            last.user,
            last.reply,
            engine=col.ref,
            persona=self.persona_id() if self.persona_on() else "",
        )
        self.notify(f"Sent column {column.upper()}'s reply to annotation ({key}).")

    # -- drawing --------------------------------------------------------------------------
    def _titles(self) -> None:
        for c in COLUMNS:
            ref = self.columns[c].ref
            self.query_one(f"#title-{c}", Static).update(f"{c.upper()}: {ref}")
            self.query_one(f"#col-{c}").display = ref != NONE or c == "a"

    def _add_turn_widgets(self, column: str, index: int) -> None:
        transcript = self.query_one(f"#transcript-{column}", VerticalScroll)
        turn = self.columns[column].turns[index]
        transcript.mount(Static(f"you: {turn.user}", classes="chat-user", markup=False))
        transcript.mount(Static("", id=f"reply-{column}-{index}", classes="chat-reply", markup=False))
        self._show_turn(column, index)

    def _show_turn(self, column: str, index: int) -> None:
        turn = self.columns[column].turns[index]
        suffix = {
            "loading": "… loading the engine",
            "waiting": "…",
            "streaming": " ▌",
            "stopped": "  (stopped)",
            "error": f"  (error: {turn.error})",
        }.get(turn.state, "")
        widget = self.query_one(f"#reply-{column}-{index}", Static)
        widget.update(turn.reply + suffix)
        widget.set_class(turn.state == "error", "-error")
        widget.set_class(turn.state == "stopped", "-stopped")
        self.query_one(f"#transcript-{column}", VerticalScroll).scroll_end(animate=False)

    def _status(self, text: str = "") -> None:
        if not text:
            states = [t.state for c in COLUMNS for t in self.columns[c].turns[-1:]]
            if any(s in ("loading", "waiting", "streaming") for s in states):
                text = "replying… (Esc stops)"
            else:
                s = self.sampling_text()
                text = f"turn {self.turn}  {s}" + (f"  history: {self.chat_log.path.name}" if self.chat_log else "")
        self.query_one("#chat-status", Static).update(text)

    def sampling_text(self) -> str:
        try:
            s = self.sampling()
        except ValueError as e:
            return str(e)
        return f"temp {s['temperature']} top-p {s['top_p']} max {s['max_tokens']} seed {s['seed']}"
