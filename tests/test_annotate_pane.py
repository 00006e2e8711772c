"""The Annotate pane driven by keys (Pilot), the `annotate` command, and labels that survive
`kill -9` of the real app running in a terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input

import waiting
from annotate_fixtures import MODELS, make_annotation_session
from evaluators import annotation as core
from persona_tui.app import make_app
from persona_tui.messages import SessionChanged
from persona_tui.panes.annotate import AnnotatePane
from persona_tui.screens.text_prompt import TextPrompt
from sessions.store import SessionFile
from waiting import wait_until

pytestmark = pytest.mark.anyio

ANNOTATOR = "tester"


@pytest.fixture
def session_path(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(core.ANNOTATOR_ENV, ANNOTATOR)
    return make_annotation_session(tmp_path)


def on_disk(path: Path) -> dict[tuple[str, str], object]:
    """(output, annotator) -> Annotation, as the file on disk holds them."""
    return {(a.output, a.annotator): a for a in SessionFile.load(path).session.annotations}


def text_of(pane: AnnotatePane, selector: str) -> str:
    return str(pane.query_one(selector).content)


async def test_labels_given_by_keys_are_on_disk_at_once_and_found_again(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app._notifications  # the left-out line is told on the Annotate tab, not before
        await pilot.press("6")
        # The warning comes from the pane's Show, after a refresh: wait for it, not for "idle".
        await wait_until(pilot, lambda: app._notifications, 20, "the left-out-line warning")
        (warning,) = app._notifications
        assert warning.severity == "warning" and "eval-b" in warning.message and "line 2" in warning.message
        pane = app.query_one(AnnotatePane)
        assert app.focused is pane
        assert "0 / 7 labelled" in text_of(pane, "#annotate-status")
        assert ANNOTATOR in text_of(pane, "#annotate-status")
        assert pane.item.key == "eval-a:1" and MODELS[0] in text_of(pane, "#annotate-meta")
        # The probed trait first; each label moves on to the next trait without one.
        await pilot.press("e", "n", "c", "4")
        await pilot.pause()
        # On disk well inside the app's autosave delay: saved the moment it was given.
        saved = on_disk(session_path)[("eval-a:1", ANNOTATOR)]
        assert saved.trait_labels == {
            "draws-maps": "expressed",
            "cannot-swim": "not_shown",
            "keeps-bees": "contradicted",
        }
        assert saved.consistency == 4
        assert "1 / 7 labelled" in text_of(pane, "#annotate-status")
        assert "★★★★☆" in text_of(pane, "#annotate-rating")

        await pilot.press("right", "j", "e")  # next output; its second trait
        await pilot.pause()
        assert on_disk(session_path)[("eval-a:2", ANNOTATOR)].trait_labels == {"cannot-swim": "expressed"}
        await pilot.press("u")  # undo: gone from memory and from disk
        await pilot.pause()
        assert ("eval-a:2", ANNOTATOR) not in on_disk(session_path)
        assert pane.labelling.get("eval-a:2") is None

        await pilot.press("t")
        assert isinstance(app.screen, TextPrompt)
        await pilot.press(*"too polite", "enter")
        await pilot.pause()
        assert on_disk(session_path)[("eval-a:2", ANNOTATOR)].note == "too polite"
        assert "too polite" in text_of(pane, "#annotate-rating")

        await pilot.press("s")  # skip: on to the next output without labels
        assert pane.item.key == "eval-a:4"
        await pilot.press("ctrl+q")
    assert not app.is_running

    again = make_app(session_path)
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        pane = again.query_one(AnnotatePane)
        assert "1 / 7 labelled" in text_of(pane, "#annotate-status")
        assert pane.item.key == "eval-a:2"  # the first output still without labels
        await pilot.press("left")
        assert pane.item.key == "eval-a:1"
        traits = text_of(pane, "#annotate-traits")
        assert "expressed" in traits and "not shown" in traits and "contradicted" in traits
        assert "★★★★☆ 4/5" in text_of(pane, "#annotate-rating")


async def test_blind_mode_hides_the_model_and_shuffles_per_annotator(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6", "b")
        await pilot.pause()
        pane = app.query_one(AnnotatePane)
        assert "blind on" in text_of(pane, "#annotate-status")
        queue = core.build_queue(app.session_file.session, app.session_file.workspace)
        expected = [i.key for i in core.blind_order(queue.items, ANNOTATOR)]
        assert [i.key for i in pane.order] == expected != [i.key for i in queue.items]
        seen = []
        for _ in expected:
            seen.append(pane.item.key)
            screen = app.export_screenshot()
            meta = text_of(pane, "#annotate-meta")
            assert "model hidden" in meta
            for model in (*MODELS, "chat-engine"):
                assert model not in meta and model not in screen
            assert pane.item.key not in screen  # the key names the job, so it is hidden too
            await pilot.press("right")
        assert seen == expected
        await pilot.press("3")
        await pilot.pause()
        assert on_disk(session_path)[(expected[-1], ANNOTATOR)].extra == {"blind": True}

        await pilot.press("b")  # off: the natural order, the same output still shown
        await pilot.pause()
        assert pane.item.key == expected[-1]
        assert [i.key for i in pane.order] == [i.key for i in queue.items]


async def test_another_annotator_labels_the_same_output_apart(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "e")
        await pilot.press("a")
        assert isinstance(app.screen, TextPrompt)
        app.screen.query_one(Input).value = "zoe"
        await pilot.press("enter")
        await pilot.pause()
        pane = app.query_one(AnnotatePane)
        assert "zoe" in text_of(pane, "#annotate-status")
        assert pane.item.key == "eval-a:1" and "0 / 7 labelled" in text_of(pane, "#annotate-status")
        await pilot.press("c")
        await pilot.pause()
    saved = on_disk(session_path)
    assert saved[("eval-a:1", ANNOTATOR)].trait_labels == {"draws-maps": "expressed"}
    assert saved[("eval-a:1", "zoe")].trait_labels == {"draws-maps": "contradicted"}


async def test_export_from_the_pane(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "n", "5", "x")
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")
        await pilot.pause()
    out = session_path.with_name("demo.labels.jsonl")
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["output"] == "eval-a:1" and record["annotator"] == ANNOTATOR
    assert record["trait_labels"] == {"draws-maps": "not_shown"} and record["consistency"] == 5
    assert record["model"] == MODELS[0]


async def test_every_label_asks_the_app_to_save_now(session_path: Path):
    app = make_app(session_path)
    sent: list[SessionChanged] = []
    async with app.run_test(
        size=(80, 24), message_hook=lambda m: sent.append(m) if isinstance(m, SessionChanged) else None
    ) as pilot:
        # backspace on a trait without a label changes nothing: no save
        await pilot.press("6", "e", "2", "backspace", "k", "backspace", "0", "0")
        await pilot.pause()
    unique = list({id(m): m for m in sent}.values())  # the hook sees a message at every hop
    assert [m.what.split(" ")[0] for m in unique] == ["labelled", "rated", "cleared", "cleared"]
    assert all(m.save_now for m in unique)


async def test_an_empty_queue_says_where_outputs_come_from(tmp_path: Path):
    from sessions.demo import write_demo_session

    app = make_app(write_demo_session(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "e", "3", "right", "u")
        pane = app.query_one(AnnotatePane)
        assert "Nothing to label yet" in text_of(pane, "#annotate-empty")
        assert "0 / 0 labelled" in text_of(pane, "#annotate-status")
    assert app.session_file.session.annotations == []


def test_annotate_pane_at_80x24(snap_compare, tmp_path: Path, monkeypatch):
    monkeypatch.setenv(core.ANNOTATOR_ENV, ANNOTATOR)
    path = make_annotation_session(tmp_path, damaged=False)  # no warning toast over the pane
    assert snap_compare(make_app(path), press=["6", "e", "n", "4"], terminal_size=(80, 24))


# ----------------------------------------------------------------------------- the command


async def test_the_annotate_command_opens_on_the_tab_for_its_annotator(session_path: Path):
    from textual.widgets import TabbedContent

    from persona_tui.commands.annotate import make_annotate_app

    app = make_annotate_app(SessionFile.load(session_path), annotator="zed", blind=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        pane = app.query_one(AnnotatePane)
        assert app.query_one(TabbedContent).active == "annotate" and app.focused is pane
        assert "annotator zed" in text_of(pane, "#annotate-status") and pane.blind
        queue = core.build_queue(app.session_file.session, app.session_file.workspace)
        assert pane.item.key == core.blind_order(queue.items, "zed")[0].key
        await pilot.press("e")
        await pilot.pause()
    assert (pane.item.key, "zed") in on_disk(session_path)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, core.ANNOTATOR_ENV: ANNOTATOR},
    )


def test_the_annotate_command_lists_the_queue_and_exports(session_path: Path, tmp_path: Path):
    sf = SessionFile.load(session_path)
    core.Labelling(sf.session, "alice").rate("eval-a:1", 3)
    core.Labelling(sf.session, ANNOTATOR).label_trait("chat:0", "cannot-swim", "expressed")
    sf.save()

    listed = cli("annotate", str(session_path), "--queue")
    assert listed.returncode == 0, listed.stderr
    assert "eval-a:1" in listed.stdout and "[labelled by alice]" in listed.stdout
    assert "1 / 7 labelled by tester." in listed.stdout
    assert "line 2 is not valid JSON" in listed.stderr

    blind = cli("annotate", str(session_path), "--queue", "--blind")
    assert not any(m in blind.stdout for m in (*MODELS, "chat-engine"))

    out = tmp_path / "labels.jsonl"
    done = cli("annotate", str(session_path), "--export", str(out), "--annotator", "alice")
    assert done.returncode == 0 and "Wrote 1 label by alice" in done.stdout
    assert [json.loads(line)["output"] for line in out.read_text().splitlines()] == ["eval-a:1"]

    missing = cli("annotate", str(tmp_path / "nope.toml"), "--queue")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _label_for_agreement(session_path: Path) -> None:
    """People's labels beside the machine's "not_shown" (markers) on eval-a's expression rows."""
    sf = SessionFile.load(session_path)
    alice = core.Labelling(sf.session, "alice")
    alice.label_trait("eval-a:1", "draws-maps", "not_shown")
    alice.label_trait("eval-a:2", "draws-maps", "expressed")
    alice.label_trait("eval-a:4", "cannot-swim", "not_shown")
    sf.save()


def test_the_annotate_command_prints_agreement_with_people(session_path: Path):
    _label_for_agreement(session_path)
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "annotate", str(session_path), "--agreement"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "150"},
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    # draws-maps: pairs (n, n), (n, e): p_o = 0.5, p_e = 0.5 -> kappa 0, chance level; the
    # machine said "not shown" twice, the person once "expressed" and once "not shown".
    # Every resample of those two pairs gives kappa 0 or leaves it undefined: the interval is [0, 0].
    lines = done.stdout.splitlines()
    below = {line.split()[0]: lines[k + 1].split() for k, line in enumerate(lines[:-1]) if line.strip()}
    # κ's reading sits under its value (the table fits 80 columns); the confusion is one group per
    # machine label, counts by the person's label.
    assert rows["draws-maps"] == [
        "draws-maps",
        "2",
        "0.00",
        "[0.00,",
        "0.00]",
        "50%",
        "0/0/0",
        "1/1/0",
        "0/0/0",
        "markers",
    ]
    assert below["draws-maps"] == ["chance"]
    # cannot-swim: one pair, both raters used one label: kappa is undefined, not 1.
    assert rows["cannot-swim"] == ["cannot-swim", "1", "–", "100%", "0/0/0", "0/1/0", "0/0/0", "markers"]
    assert below["cannot-swim"] == ["undefined"]
    assert "annotators: alice" in done.stdout
    assert "Only one person has labelled so far" in " ".join(done.stdout.split())  # people vs people needs two


async def test_the_annotate_pane_shows_agreement(session_path: Path):
    from persona_tui.screens.report import ReportScreen

    _label_for_agreement(session_path)
    app = make_app(session_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("6")
        await pilot.pause()
        assert app.focused is app.query_one(AnnotatePane)
        await pilot.press("g")
        await app.workers.wait_for_complete()  # the report is read off the UI thread
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        screen = re.sub(r"<[^>]+>", "", app.export_screenshot()).replace("&#160;", " ")
        assert "draws-maps" in screen and "chance" in screen and "Spearman" in screen, screen[-3000:]
        titles = [getattr(r, "title", "") for r in app.screen.renderables]
        assert "People vs people · annotators: alice" in titles  # people vs people, told it needs two
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReportScreen)


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to run the app in a terminal")
def test_labels_survive_kill_9_of_the_app(session_path: Path, tmp_path: Path):
    """The installed command in a real terminal; labels given, then the process killed outright.

    The kill comes well inside the app's autosave delay, so only an immediate save passes.
    """
    exe = Path(sys.executable).with_name("persona-tui")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "persona_tui.cli"]
    socket = f"annotate-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    # COLUMNS/LINES (pytest may set them) would override the terminal's real size.
    # The debounced autosave far off: only the immediate save of a label can put it on disk.
    shell = (
        f"exec env -u COLUMNS -u LINES {core.ANNOTATOR_ENV}={ANNOTATOR} TERM=xterm-256color "
        "PERSONA_TUI_AUTOSAVE_SECONDS=60 "
        f"{shlex.join(command)} {shlex.quote(str(session_path))}"
    )
    subprocess.run([*tmux, "new-session", "-d", "-s", "app", "-x", "100", "-y", "30", shell], check=True)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "app"], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in screen():
            assert time.monotonic() < deadline, f"never saw {text!r} on screen:\n{screen()}"
            time.sleep(0.1)

    def keys(*names: str) -> None:
        subprocess.run([*tmux, "send-keys", "-t", "app", *names], check=True)

    try:
        pid = int(
            subprocess.run(
                [*tmux, "display-message", "-p", "-t", "app", "#{pane_pid}"], capture_output=True, text=True, check=True
            ).stdout
        )
        wait_for("6 Annotate")

        # The tab underline spans the terminal (polled: a capture can catch a half-drawn frame).
        def underline_spans() -> bool:
            lines = screen().splitlines()
            return len(lines) > 2 and len(lines[2]) == 100

        waiting.wait_for(underline_spans, 20, what="the tab underline to span 100 columns")
        keys("6")
        wait_for("0 / 7 labelled")
        keys("e")
        wait_for("▶ ·             cannot-swim")
        keys("c")
        wait_for("1 / 7 labelled")
        keys("4")
        wait_for("4/5")
        keys("Right", "n")
        wait_for("2 / 7 labelled")
        # On screen first, then on disk (validate, fsync, rename): wait for the file, then kill,
        # still 60 s inside the debounced autosave.
        waiting.wait_for(lambda: ("eval-a:2", ANNOTATOR) in on_disk(session_path), 30, what="the second label on disk")
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the app did not die"
            time.sleep(0.05)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)

    text = session_path.read_text()
    tomllib.loads(text)  # whole, valid TOML: never a half-written file
    saved = on_disk(session_path)
    first = saved[("eval-a:1", ANNOTATOR)]
    assert first.trait_labels == {"draws-maps": "expressed", "cannot-swim": "contradicted"}
    assert first.consistency == 4
    assert saved[("eval-a:2", ANNOTATOR)].trait_labels == {"draws-maps": "not_shown"}
    assert not list(session_path.parent.glob(".*.tmp")) and not list(session_path.parent.glob("*.tmp"))
