"""The Textual app: one session open, its panes as tabs, autosave owned here.

`make_app` is the factory the CLI and the tests share. The panes edit the session in memory
and post `SessionChanged`; this module alone writes the file (debounced), shows whether it is
on disk, and makes quitting with unsaved changes impossible to lose.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Static, TabbedContent, TabPane

from persona_tui.messages import SessionChanged
from persona_tui.screens.choice import ChoiceScreen
from persona_tui.widgets.session_bar import SessionBar
from sessions.store import SaveError, SessionFile
from sessions.validate import SessionError

HERE = Path(__file__).parent

# (tab id, title, "module:PaneClass"); the tab's number key is its position. The first tab's
# pane is composed with the screen; every other pane is imported and mounted when its tab is
# first opened, so the workbench paints at once and stays responsive however much the other
# panes weigh, and a pane that fails to load does not take the others down.
TABS = [
    ("personas", "Personas", "persona_tui.panes.personas:PersonasPane"),
    ("data", "Data", "persona_tui.panes.data:DataPane"),
    ("train", "Train", "persona_tui.panes.train:TrainPane"),
    ("chat", "Chat", "persona_tui.panes.chat:ChatPane"),
    ("evaluate", "Evaluate", "persona_tui.panes.evaluate:EvaluatePane"),
    ("annotate", "Annotate", "persona_tui.panes.annotate:AnnotatePane"),
]
TAB_IDS = [tab_id for tab_id, _, _ in TABS]


def pane_class(spec: str) -> type[Widget]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def pane_css_paths(tab_ids: list[str]) -> list[Path]:
    """The existing `<module>.tcss` files beside the pane modules of `tab_ids`."""
    paths = []
    for tab_id, _, spec in TABS:
        if tab_id in tab_ids:
            module_spec = importlib.util.find_spec(spec.partition(":")[0])
            if module_spec is not None and module_spec.origin:
                css = Path(module_spec.origin).with_suffix(".tcss")
                if css.exists():
                    paths.append(css)
    return paths


class PaneFailed(Static):
    """Stands in for a pane whose module failed to import or build."""


# When set, the app exits right after its first frame is painted (bench/startup.py).
EXIT_ON_FIRST_PAINT = "PERSONA_TUI_EXIT_ON_FIRST_PAINT"
# Seconds between the last change and the autosave (default 1).
AUTOSAVE_SECONDS = "PERSONA_TUI_AUTOSAVE_SECONDS"


class PersonaApp(App):
    """The workbench on one session file."""

    # A pane's layout lives beside its module (panes/<name>.tcss): the first tab's is read
    # with these, the others' when their panes are mounted (see _load_pane_css).
    CSS_PATH = [HERE / "app.tcss"]
    TITLE = "persona-tui"
    AUTOSAVE_DELAY = 1.0  # seconds after the last change
    # After a hang-up the edits are saved first; if Textual's shutdown then stalls (it restores a
    # terminal that is gone), the process ends anyway this many seconds later, so a dropped SSH
    # connection never leaves an app running headless.
    HANGUP_GRACE_S = 10.0

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Textual's default makes ctrl+c only hint at ctrl+q; over SSH people press ctrl+c.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+s", "save", "Save", show=False),
        *(Binding(str(n), f"show_tab('{tab_id}')", title, show=False) for n, (tab_id, title, _) in enumerate(TABS, 1)),
    ]

    def __init__(self, session_file: SessionFile, *, initial_tab: str = "personas") -> None:
        super().__init__()
        if initial_tab not in TAB_IDS:
            raise ValueError(f"no tab {initial_tab!r}; the tabs are {', '.join(TAB_IDS)}")
        self.session_file = session_file
        self.initial_tab = initial_tab
        self.dirty = False
        self.save_error: str | None = None  # why the last save failed, while it stands
        self._save_refused_by_disk = False  # the file changed on disk: only force overwrites
        self._save_timer: Timer | None = None
        self._notified_problems: list[str] = []
        self._pane_mounts: dict[str, asyncio.Future] = {}
        if os.environ.get(AUTOSAVE_SECONDS):
            self.AUTOSAVE_DELAY = float(os.environ[AUTOSAVE_SECONDS])
        self.css_path = [*self.css_path, *pane_css_paths([initial_tab])]

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        name = self.session_file.session.name or self.session_file.path.stem
        yield SessionBar(f"{name} · {self.session_file.path.name}", id="session-bar")
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            for n, (tab_id, title, _) in enumerate(TABS, 1):
                with TabPane(f"{n} {title}", id=tab_id):
                    if tab_id == self.initial_tab:
                        yield self._build_pane(tab_id)
        yield Footer()

    def _build_pane(self, tab_id: str) -> Widget:
        """Import and construct the pane of `tab_id`, giving it the session (attributes down)."""
        spec = next(s for t, _, s in TABS if t == tab_id)
        try:
            pane = pane_class(spec)(id=f"{tab_id}-pane")
            pane.session_file = self.session_file
        except Exception as error:  # one broken pane must not take the session editor down
            self.log.error(f"pane {spec} failed", error)
            return PaneFailed(
                f"This tab could not be loaded: {type(error).__name__}: {error}",
                id=f"{tab_id}-pane",
                classes="pane-failed",
                markup=False,
            )
        return pane

    async def pane(self, tab_id: str) -> Widget:
        """The pane of `tab_id`, mounted first if it is not yet (for tests and commands)."""
        mounting = self._pane_mounts.get(tab_id)
        if mounting is None:
            mounting = self._pane_mounts[tab_id] = asyncio.ensure_future(self._mount_pane(tab_id))
        return await mounting

    async def _mount_pane(self, tab_id: str) -> Widget:
        tab_pane = self.query_one(f"#{tab_id}", TabPane)
        if tab_pane.children:
            return tab_pane.children[0]
        self._load_pane_css([tab_id])
        pane = self._build_pane(tab_id)
        await tab_pane.mount(pane)
        return pane

    async def reread_session(self, tab_ids: Iterable[str]) -> None:
        """Show what one pane added to the session in the other panes that list it (those already
        mounted; a pane mounted later reads the session then). Each of those panes has
        `reread_session`."""
        for tab_id in tab_ids:
            tab_pane = self.query_one(f"#{tab_id}", TabPane)
            if not tab_pane.children:
                continue
            await tab_pane.children[0].reread_session()  # type: ignore[attr-defined]

    def _load_pane_css(self, tab_ids: list[str]) -> None:
        """Read the layout files of panes about to be mounted (one reparse for all of them)."""
        new = [p for p in pane_css_paths(tab_ids) if not self.stylesheet.has_source(str(p), "")]
        if new:
            for path in new:
                self.stylesheet.read(path)
            self.stylesheet.reparse()
            self.stylesheet.update(self)

    def on_mount(self) -> None:
        self.title = self.session_file.session.name or self.session_file.path.stem
        self._watch_signals()
        self.focus_pane(self.query_one(f"#{self.initial_tab}-pane"))
        self.call_after_refresh(self._first_frame_painted)

    def _first_frame_painted(self) -> None:
        # Everything made while starting (widgets, styles, the session) lives as long as the app:
        # freeze it out of the collector's sight, so later full collections, which pause the
        # app mid-keypress, walk only what is new. Then collect again (paused by the CLI while
        # starting: commands/open.py).
        gc.freeze()
        # A redraw makes tens of thousands of short-lived objects; collecting the young
        # generation every 700 allocations (the default) runs dozens of times per frame.
        gc.set_threshold(20_000, 20, 20)
        gc.enable()
        if os.environ.get(EXIT_ON_FIRST_PAINT):
            self.exit()

    def focus_pane(self, pane: Widget) -> None:
        """Give the keyboard to `pane`: its `focus_default()` if it has one, else itself or its
        first focusable widget."""
        focus_default = getattr(pane, "focus_default", None)
        if focus_default is not None:
            focus_default()
            return
        target = pane if pane.can_focus else next((w for w in pane.query("*") if w.can_focus), None)
        self.screen.set_focus(target)

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
        import threading

        watchdog = threading.Timer(self.HANGUP_GRACE_S, os._exit, args=(1,))
        watchdog.daemon = True  # a shutdown that finishes in time ends the process first
        watchdog.start()
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
            self._show_save_state("unsaved")
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
        self._show_save_state("saved")
        if recovered:
            self.notify(f"Saved {self.session_file.path.name}.", title="Saved")
        return True

    def _show_save_state(self, state: str) -> None:
        # The autosave timer can fire while the app is being torn down, after the bar is gone:
        # the save itself still happens, only the bar is not there to show it.
        try:
            self.query_one(SessionBar).state = state
        except NoMatches:
            pass

    def _save_failed(self, problems: list[str], title: str) -> None:
        self.save_error = "\n".join(problems)
        self._show_save_state("error")
        if problems != self._notified_problems:
            self._notified_problems = problems
            shown = problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
            self.notify("\n".join(shown), title=title, severity="error", timeout=8, markup=False)

    def save_if_dirty(self) -> bool:
        """Before quitting: take in the edit still on its way from the focused field, then write
        whatever differs from the file.

        A keystroke reaches the session through messages (the field's Changed, then the pane's
        SessionChanged); a hang-up or a quit key can arrive before they are handled, so `dirty`
        alone would lose the last characters typed.
        """
        self._flush_focused_edit()
        if not self.dirty and not self.session_file.changed():
            return True
        return self.save()

    def _flush_focused_edit(self) -> None:
        """Hand the focused text field to the pane that owns it (`flush_edit`), now, not via the
        message queue. Panes apply it as they would its Changed message (idempotent)."""
        widget = self.focused
        if widget is None:
            return
        for node in widget.ancestors_with_self:
            flush = getattr(node, "flush_edit", None)
            if callable(flush):
                try:
                    flush(widget)
                except Exception as error:  # noqa: BLE001 - quitting must not fail on a field
                    self.log.error(f"could not take in the edit of {widget!r}: {error!r}")
                return

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
    async def action_show_tab(self, tab_id: str) -> None:
        pane = await self.pane(tab_id)
        self.query_one(TabbedContent).active = tab_id
        # Focus the new tab now: until Textual handles the Hide event, a key typed right after
        # the switch would reach the hidden pane's bindings (e.g. "6e" exporting a card).
        self.focus_pane(pane)

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A click on a tab whose pane is not mounted yet: mount it now.
        if event.tabbed_content.id == "tabs" and event.pane.id in TAB_IDS:
            await self.pane(event.pane.id)

    def _personas_action(self, action: str):
        async def run() -> None:
            await self.action_show_tab("personas")
            pane = await self.pane("personas")
            await pane.run_action(action)

        return run

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        persona_commands = [
            ("Add persona", "Add an empty persona and edit it", "add_persona"),
            ("Duplicate persona", "Copy the selected persona under a new id", "duplicate_persona"),
            ("Rename persona", "Change the selected persona's id", "rename_persona"),
            ("Delete persona", "Delete the selected persona (asks first)", "delete_persona"),
            (
                "Import Character Card",
                "Add a persona from a Character Card V2 JSON or a .txt persona list",
                "import_card",
            ),
            ("Export Character Card", "Write the selected persona as a Character Card V2 JSON", "export_card"),
            (
                "Add the recipe for this persona",
                "Its datasets, a LoRA run at the measured recipe and a traits evaluation against the base",
                "add_recipe",
            ),
        ]
        for title, help, action in persona_commands:
            yield SystemCommand(title, help, self._personas_action(action))
        yield SystemCommand("Save session", f"Write {self.session_file.path.name} now", self.action_save)
        for n, (tab_id, title, _) in enumerate(TABS, 1):
            yield SystemCommand(
                f"Show {title} tab",
                f"Switch to the {title} tab (key {n})",
                lambda tab_id=tab_id: self.run_worker(self.action_show_tab(tab_id)),
            )


def make_app(session_path: Path | SessionFile | None, *, initial_tab: str = "personas") -> PersonaApp:
    """The app on the session at `session_path`; raises SessionError for a file it cannot open.

    Loading happens here, before any terminal output, so a bad file never starts the UI. An
    already loaded `SessionFile` is taken as it is (the CLI loads before importing Textual).
    """
    if session_path is None:
        raise SessionError(
            "no session file named; open one (persona-tui SESSION.toml) or create one with 'persona-tui new PATH'."
        )
    if isinstance(session_path, SessionFile):
        return PersonaApp(session_path, initial_tab=initial_tab)
    return PersonaApp(SessionFile.load(Path(session_path)), initial_tab=initial_tab)
