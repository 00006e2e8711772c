"""Autosave and quitting: no edit is lost, no invalid session is written, failures are shown."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, TabbedContent, TextArea

from persona_tui.app import TABS, make_app, pane_class
from persona_tui.screens.choice import ChoiceScreen
from persona_tui.widgets.session_bar import SessionBar
from sessions.store import SessionFile
from waiting import wait_until as until

pytestmark = pytest.mark.anyio


def saved_name(path: Path) -> str:
    return SessionFile.load(path).session.personas[0].name


@pytest.mark.parametrize("quit_keys", [("escape", "q"), ("ctrl+q",), ("ctrl+c",)])
async def test_unsaved_changes_are_saved_on_quit(session_path: Path, quit_keys):
    app = make_app(session_path)
    app.AUTOSAVE_DELAY = 60  # only quitting can save within this test, however slow the machine
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("enter", "end", "!")
        assert app.dirty and saved_name(session_path) == "Odile Marsh"
        await pilot.press(*quit_keys)  # well inside the autosave delay
    assert not app.is_running
    assert saved_name(session_path) == "Odile Marsh!"


async def test_looking_at_every_tab_changes_nothing(session_path: Path):
    """Opening a pane is not an edit: once the Data pane's variant Select announced its first
    value as it mounted and the session read as unsaved (and was rewritten) though nobody typed."""
    before = session_path.read_text()
    app = make_app(session_path)
    app.AUTOSAVE_DELAY = 600  # a change would stay marked: no autosave clears the mark meanwhile
    async with app.run_test(size=(100, 30)) as pilot:
        for n, (tab_id, _, spec) in [*list(enumerate(TABS, 1))[1:], (1, TABS[0])]:
            await pilot.press(str(n))
            pane = pane_class(spec)
            await until(
                pilot,
                lambda tab_id=tab_id, pane=pane: (
                    app.query_one(TabbedContent).active == tab_id and any(p.is_mounted for p in app.query(pane))
                ),
                what=f"the {tab_id} pane",
            )
            await pilot.pause()  # what the pane posted as it mounted is handled now
            assert not app.dirty and not app.session_file.changed(), f"opening the {tab_id} pane changed the session"
        await pilot.press("ctrl+q")
    assert session_path.read_text() == before


@pytest.mark.parametrize("field", ["#persona-name", "#persona-summary", "#data-size"])
async def test_an_edit_whose_messages_are_still_queued_is_saved_on_quit(session_path: Path, field: str):
    """A hang-up or quit key can arrive before the field's Changed message reaches the pane (the
    race that once lost a typed character over a dropped SSH connection): quitting takes the
    focused field's text in directly."""
    app = make_app(session_path)
    app.AUTOSAVE_DELAY = 60
    async with app.run_test(size=(100, 30)) as pilot:
        if field == "#data-size":
            await pilot.press("2")
            await pilot.pause()
        widget = app.query_one(field)
        widget.focus()
        await pilot.pause()
        assert not app.dirty
        # Change the text and quit in the same step: no message is handled in between.
        if isinstance(widget, Input):
            widget.value = "7" if field == "#data-size" else "Odile Marsh?"
        else:
            assert isinstance(widget, TextArea)
            widget.text = "A lighthouse keeper, edited."
        assert app.save_if_dirty()
        app.exit()
    saved = SessionFile.load(session_path).session
    if field == "#persona-name":
        assert saved.personas[0].name == "Odile Marsh?"
    elif field == "#persona-summary":
        assert saved.personas[0].summary == "A lighthouse keeper, edited."
    else:
        assert saved.datasets[0].size == 7


async def test_an_invalid_session_is_never_written_and_the_field_is_named(session_path: Path):
    before = session_path.read_text()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("enter", "home", "ctrl+k")  # empty the name: not a valid persona
        await until(pilot, lambda: app.query_one(SessionBar).state == "error", what="the refused save")
        assert app.query_one(SessionBar).state == "error"
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "personas[0].name" in errors[0].message
        assert session_path.read_text() == before

        # Quitting asks; cancel keeps the app and the edit.
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ChoiceScreen)
        assert {b.name for b in app.screen.query("Button")} == {"retry", "discard", "cancel"}
        await pilot.press("escape")
        assert app.is_running and not isinstance(app.screen, ChoiceScreen)

        # Fixing the field saves again and the header says so.
        await pilot.press(*"Odile")
        await until(pilot, lambda: app.query_one(SessionBar).state == "saved", what="the autosave")
        assert app.query_one(SessionBar).state == "saved"
        assert saved_name(session_path) == "Odile"
        await pilot.press("ctrl+q")
    assert not app.is_running


async def test_quit_without_saving_leaves_the_file_alone(session_path: Path):
    before = session_path.read_text()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("enter", "home", "ctrl+k", "ctrl+q")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.click("#choice-discard")
    assert not app.is_running
    assert session_path.read_text() == before


async def test_a_file_changed_on_disk_is_not_overwritten_unless_asked(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        # Someone else edits the file while the app has it open.
        other = session_path.read_text().replace('name = "Odile Marsh"', 'name = "Odile M."')
        session_path.write_text(other)  # a new size too, so the store sees the change at any clock resolution
        await pilot.press("enter", "end", "!")
        await until(pilot, lambda: app.query_one(SessionBar).state == "error", what="the refused save")
        assert saved_name(session_path) == "Odile M."
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.click("#choice-overwrite")
    assert not app.is_running
    assert saved_name(session_path) == "Odile Marsh!"


def _in_a_terminal(args: list[str], **env: str) -> tuple[subprocess.Popen, int]:
    """Python with `args` on a fresh 100x30 pty of its own session; (process, the pty's leader fd)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", **env),
        start_new_session=True,
    )
    os.close(follower)
    return proc, leader


def test_a_dropped_terminal_saves_pending_edits(session_path: Path):
    """SIGHUP (an SSH connection dropping) inside the autosave delay still saves the edit."""
    # Autosave far off: only the hang-up can save the edit in time.
    proc, leader = _in_a_terminal(["-m", "persona_tui.cli", str(session_path)], PERSONA_TUI_AUTOSAVE_SECONDS="60")
    seen = b""

    def read_until(marker: bytes, timeout: float = 20.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {marker!r}; the terminal showed: {seen[-1500:]!r}"
            ready, _, _ = select.select([leader], [], [], left)
            if ready:
                seen += os.read(leader, 65536)

    try:
        read_until(b"Odile Marsh")
        # The one place left with fixed pauses: a real terminal shows only drawn bytes, with no
        # stable sign that the focus moved and the name was selected (sent at once, the keys
        # overtake the focus change and "?" replaces the name; tried 2026-12-03, 3 of 3 failed).
        os.write(leader, b"\r")  # into the name field, which selects the name
        time.sleep(0.5)
        os.write(leader, b"\x05")  # ctrl+e: to the end, unselected
        time.sleep(0.5)
        os.write(leader, b"?")
        read_until(b"Odile Marsh?")  # the edit is on screen (so in the session in memory)
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while proc.poll() is None:
            # Keep reading: an app blocked writing to a full terminal would never exit.
            assert time.monotonic() < deadline, f"still running after SIGHUP; it showed: {seen[-1500:]!r}"
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    pass
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert saved_name(session_path) == "Odile Marsh?", seen[-3000:].decode(errors="replace")


# The app as `persona-tui SESSION` runs it, except that its shutdown never finishes (a stand-in
# for Textual restoring a terminal that is gone, seen once in CI: the app outlived its tmux
# server by 30 s); the grace is short so the test is.
_STALLED_SHUTDOWN = """
import sys, time
from persona_tui import app as app_module
app_module.PersonaApp.HANGUP_GRACE_S = 2.0
def stalled(self):
    time.sleep(300)
app_module.PersonaApp.on_unmount = stalled
from persona_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_hang_up_ends_the_app_even_when_its_shutdown_stalls(session_path: Path):
    """After SIGHUP the edits are saved, and the process ends within its grace even if Textual's
    shutdown never returns: a dropped SSH connection leaves no app running headless."""
    proc, leader = _in_a_terminal(["-c", _STALLED_SHUTDOWN, str(session_path)])
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"Odile Marsh" not in seen:
            assert time.monotonic() < deadline, f"the app never drew; it showed: {seen[-1500:]!r}"
            if select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 65536)
        os.kill(proc.pid, signal.SIGHUP)
        hung_up = time.monotonic()
        while proc.poll() is None and time.monotonic() - hung_up < 60:
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    pass
        took = time.monotonic() - hung_up
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 1, f"exit {proc.returncode} after {took:.0f} s"
    assert took < 30, f"ended {took:.0f} s after the hang-up; the grace is 2 s"
