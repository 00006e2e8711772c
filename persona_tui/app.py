"""The Textual app: one session open, its panes as tabs, autosave owned here.

`make_app` is the factory the CLI and the tests share. The panes edit the session in memory
and post `SessionChanged`; this module alone writes the file (debounced), shows whether it is
on disk, and makes quitting with unsaved changes impossible to lose.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, TabbedContent, TabPane

from persona_tui.messages import SessionChanged
from persona_tui.panes.annotate import AnnotatePane
from persona_tui.panes.chat import ChatPane
from persona_tui.panes.data import DataPane
from persona_tui.panes.evaluate import EvaluatePane
from persona_tui.panes.personas import PersonasPane
from persona_tui.panes.train import TrainPane
from persona_tui.screens.choice import ChoiceScreen
from persona_tui.widgets.session_bar import SessionBar
from sessions.store import SaveError, SessionFile
from sessions.validate import SessionError

HERE = Path(__file__).parent

# (tab id, title, pane class); the tab's number key is its position.
TABS = [
    ("personas", "Personas", PersonasPane),
    ("data", "Data", DataPane),
    ("train", "Train", TrainPane),
    ("chat", "Chat", ChatPane),
    ("evaluate", "Evaluate", EvaluatePane),
    ("annotate", "Annotate", AnnotatePane),
]

# When set, the app exits right after its first frame is painted (bench/startup.py).
EXIT_ON_FIRST_PAINT = "PERSONA_TUI_EXIT_ON_FIRST_PAINT"


class PersonaApp(App):
    """The workbench on one session file."""

    # A pane's layout may live in panes/<name>.tcss: every one there is loaded.
    CSS_PATH = [
        HERE / "app.tcss",
        *sorted((HERE / "panes").glob("*.tcss")),
        *sorted((HERE / "screens").glob("*.tcss")),
    ]
    TITLE = "persona-tui"
    AUTOSAVE_DELAY = 1.0  # seconds after the last change

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Textual's default makes ctrl+c only hint at ctrl+q; over SSH people press ctrl+c.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+s", "save", "Save", show=False),
        *(
            Binding(str(n), f"show_tab('{tab_id}')", title, show=False)
            for n, (tab_id, title, _) in enumerate(TABS, 1)
        ),
    ]

    def __init__(self, session_file: SessionFile) -> None:
        super().__init__()
        self.session_file = session_file
        self.dirty = False
        self.save_error: str | None = None  # why the last save failed, while it stands
        self._save_refused_by_disk = False  # the file changed on disk: only force overwrites
        self._save_timer: Timer | None = None
        self._notified_problems: list[str] = []

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield SessionBar(id="session-bar")
        with TabbedContent(initial="personas", id="tabs"):
            for n, (tab_id, title, pane_class) in enumerate(TABS, 1):
                with TabPane(f"{n} {title}", id=tab_id):
                    pane = pane_class(id=f"{tab_id}-pane")
                    pane.session_file = self.session_file
                    yield pane
        yield Footer()

    def on_mount(self) -> None:
        bar = self.query_one(SessionBar)
        session = self.session_file.session
        name = session.name or self.session_file.path.stem
        bar.title = f"{name} · {self.session_file.path.name}"
        self.title = name
        self._watch_signals()
        if os.environ.get(EXIT_ON_FIRST_PAINT):
            self.call_after_refresh(self.exit)

    def _watch_signals(self) -> None:
        """A dropped SSH connection (SIGHUP) or a kill (SIGTERM) saves pending edits first."""
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_hangup)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass  # not the main thread, or a platform without these signals

    def _on_hangup(self) -> None:
        self.save_if_dirty()
        self.exit(return_code=1)

    def on_unmount(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass

    # -- saving -------------------------------------------------------------------------
    def on_session_changed(self, message: SessionChanged) -> None:
        self.dirty = True
        if self.save_error is None:
            self.query_one(SessionBar).state = "unsaved"
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        if message.save_now:
            self.save()
        else:
            self._save_timer = self.set_timer(self.AUTOSAVE_DELAY, self.save, name="autosave")

    def save(self, force: bool = False) -> bool:
        """Write the session now; on failure say why (once per distinct reason) and keep it dirty.

        `force` overwrites a file that changed on disk since it was opened.
        """
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        self._save_refused_by_disk = False
        try:
            self.session_file.save(force=force)
        except SaveError as error:
            self._save_refused_by_disk = True
            self._save_failed([str(error)], title="Not saved")
            return False
        except SessionError as error:
            problems = [str(p) for p in error.problems] or [str(error)]
            self._save_failed(problems, title="Not saved: fix these first")
            return False
        except (OSError, ValueError) as error:
            self._save_failed([f"Could not write {self.session_file.path}: {error}"], title="Not saved")
            return False
        recovered = self.save_error is not None
        self.dirty = False
        self.save_error = None
        self._notified_problems = []
        self.query_one(SessionBar).state = "saved"
        if recovered:
            self.notify(f"Saved {self.session_file.path.name}.", title="Saved")
        return True

    def _save_failed(self, problems: list[str], title: str) -> None:
        self.save_error = "\n".join(problems)
        self.query_one(SessionBar).state = "error"
        if problems != self._notified_problems:
            self._notified_problems = problems
            shown = problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
            self.notify("\n".join(shown), title=title, severity="error", timeout=8, markup=False)

    def save_if_dirty(self) -> bool:
        return self.save() if self.dirty else True

    def action_save(self) -> None:
        if self.save():
            self.notify(f"Saved {self.session_file.path.name}.")

    # -- quitting -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        if self.save_if_dirty():
            self.exit()
            return

        def decided(choice: str) -> None:
            if choice == "retry":
                self.call_next(self.action_quit)
            elif choice == "overwrite":
                if self.save(force=True):
                    self.exit()
            elif choice == "discard":
                self.exit()

        choices = [("retry", "Retry save", "primary")]
        if self._save_refused_by_disk:
            choices.append(("overwrite", "Overwrite the file", "warning"))
        choices += [("discard", "Quit without saving", "error"), ("cancel", "Cancel", "default")]
        self.push_screen(
            ChoiceScreen(
                "Your changes are not saved",
                f"Saving {self.session_file.path.name} failed:\n{self.save_error}\n\n"
                "Cancel to go back and fix it; your changes stay in the app until you quit.",
                choices,
                hotkeys={"r": "retry"},
            ),
            decided,
        )

    # -- tabs and the command palette ---------------------------------------------------
    def action_show_tab(self, tab_id: str) -> None:
        self.query_one(TabbedContent).active = tab_id
        # Focus the new tab now: until Textual handles the Hide event, a key typed right after
        # the switch would reach the hidden pane's bindings (e.g. "6e" exporting a card).
        pane = self.query_one(f"#{tab_id}-pane")
        target = pane if pane.can_focus else next((w for w in pane.query("*") if w.can_focus), None)
        self.screen.set_focus(target)

    def _personas_action(self, action: str):
        async def run() -> None:
            self.action_show_tab("personas")
            pane = self.query_one(PersonasPane)
            await pane.run_action(action)

        return run

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        persona_commands = [
            ("Add persona", "Add an empty persona and edit it", "add_persona"),
            ("Duplicate persona", "Copy the selected persona under a new id", "duplicate_persona"),
            ("Rename persona", "Change the selected persona's id", "rename_persona"),
            ("Delete persona", "Delete the selected persona (asks first)", "delete_persona"),
            ("Import Character Card", "Add a persona from a Character Card V2 JSON or a .txt persona list", "import_card"),
            ("Export Character Card", "Write the selected persona as a Character Card V2 JSON", "export_card"),
        ]
        for title, help, action in persona_commands:
            yield SystemCommand(title, help, self._personas_action(action))
        yield SystemCommand("Save session", f"Write {self.session_file.path.name} now", self.action_save)
        for n, (tab_id, title, _) in enumerate(TABS, 1):
            yield SystemCommand(
                f"Show {title} tab", f"Switch to the {title} tab (key {n})",
                lambda tab_id=tab_id: self.action_show_tab(tab_id),
            )


def make_app(session_path: Path | SessionFile | None) -> PersonaApp:
    """The app on the session at `session_path`; raises SessionError for a file it cannot open.

    Loading happens here, before any terminal output, so a bad file never starts the UI. An
    already loaded `SessionFile` is taken as it is (the CLI loads before importing Textual).
    """
    if session_path is None:
        raise SessionError(
            "no session file named; open one (persona-tui SESSION.toml) or create one with "
            "'persona-tui new PATH'."
        )
    if isinstance(session_path, SessionFile):
        return PersonaApp(session_path)
    return PersonaApp(SessionFile.load(Path(session_path)))
