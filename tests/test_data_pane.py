"""Pilot tests of the Data pane: edit a spec, build it as a job, browse, edit, delete, preview, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, TextArea

from persona_tui.app import make_app
from persona_tui.panes.data import DataPane, DatasetList, ExampleTable
from persona_tui.screens.choice import ChoiceScreen
from persona_tui.screens.example_editor import ExampleEditor
from persona_tui.screens.text_prompt import TextPrompt
from sessions.store import SessionFile
from trainers.data import reader as data_reader
from waiting import wait_until as until

pytestmark = pytest.mark.anyio


def on_disk(path: Path):
    return SessionFile.load(path).session


async def set_input(pilot, widget: Input, text: str) -> None:
    widget.focus()
    await pilot.press("home", "ctrl+k", *text)


async def test_build_browse_edit_delete_preview_export(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(DataPane)
        spec = pane.spec
        assert spec is not None and spec.id == on_disk(session_path).datasets[0].id
        await set_input(pilot, app.query_one("#data-size", Input), "40")
        await until(pilot, lambda: on_disk(session_path).datasets[0].size == 40, what="the autosave")
        assert on_disk(session_path).datasets[0].size == 40

        # Build: a detached job, followed into the progress bar, then the examples appear.
        app.query_one(DatasetList).focus()
        await pilot.press("b")
        await until(pilot, lambda: len(pane.rows) == 40)
        jobs_dir = session_path.parent / session_path.stem / "jobs"
        assert len(list(jobs_dir.iterdir())) == 1
        assert app.query_one(ExampleTable).row_count == 40
        assert "40 (36 train, 4 held out)" in str(app.query_one("#data-stats", Static).render())
        workspace = SessionFile.load(session_path).workspace
        assert len(data_reader.load_records(workspace, spec.id)) == 36

        # Open the first example, edit it, save.
        table = app.query_one(ExampleTable)
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExampleEditor)
        area = app.screen.query_one("#example-json", TextArea)
        record = json.loads(area.text)
        record["messages"][-1]["content"] = "Edited in the pane."
        area.load_text(json.dumps(record))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: pane.rows and pane.rows[0][2]["messages"][-1]["content"] == "Edited in the pane.")
        assert data_reader.load_records(workspace, spec.id)[0]["messages"][-1]["content"] == "Edited in the pane."

        # A broken edit stays in the editor with the reason.
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        app.screen.query_one("#example-json", TextArea).load_text('{"text": "no"}')
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ExampleEditor)
        assert "a chat_demos record has the messages shape" in str(app.screen.query_one("#example-error").render())
        await pilot.press("escape")

        # Delete one (asks first).
        table.focus()
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("y")
        await until(pilot, lambda: len(pane.rows) == 39)
        assert len(data_reader.load_records(workspace, spec.id)) == 35

        # Preview through the base model's chat template.
        table.focus()
        await pilot.press("p")
        await until(pilot, lambda: "<|im_start|>assistant" in str(app.query_one("#data-preview", Static).render()))

        # Export as an HF datasets folder.
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("h")
        out = workspace / "exports" / "datasets" / f"{spec.id}-hf"
        # The worker says when it is done (the folder's index file is written before the splits).
        await until(pilot, lambda: any(n.title in ("Exported", "Not exported") for n in app._notifications))
        assert not [n for n in app._notifications if n.severity == "error"]
        assert (out / "dataset_dict.json").is_file() and {"train", "heldout"} <= {p.name for p in out.iterdir()}


async def test_new_dataset_and_a_build_that_cannot_start(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(DataPane)
        before = len(on_disk(session_path).datasets)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("home", "ctrl+k", *"spc-import", "enter")
        await until(pilot, lambda: on_disk(session_path).dataset("spc-import") is not None, what="the new spec on disk")
        session = on_disk(session_path)
        assert len(session.datasets) == before + 1 and session.datasets[-1].id == "spc-import"
        assert pane.spec.id == "spc-import"
        assert app.query_one(DatasetList).index == before

        # Switch it to an import with no source: building says why and starts nothing.
        app.query_one("#data-format", Select).value = "persona_chat"
        await until(pilot, lambda: on_disk(session_path).datasets[-1].format == "persona_chat", what="the autosave")
        saved = on_disk(session_path).datasets[-1]
        assert (saved.format, saved.generator) == ("persona_chat", "import")
        assert app.query_one("#data-source").display and not app.query_one("#data-persona").display
        app.query_one(DatasetList).focus()
        await pilot.press("b")
        await pilot.pause()
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "its source is empty" in errors[-1].message
        assert not (session_path.parent / session_path.stem / "jobs").exists()


def _two_built_chat_sets(session_path: Path) -> tuple[str, str]:
    from sessions.model import DatasetSpec
    from trainers.data.build import build_dataset

    sf = SessionFile.load(session_path)
    persona = sf.session.personas[0].id
    for ds_id, seed in (("chat-a", 1), ("chat-b", 2)):
        spec = DatasetSpec(
            id=ds_id,
            format="chat_demos",
            persona=persona,
            size=12,
            seed=seed,
            held_out=0.25,
            extra={"token_stats": False},
        )
        sf.session.datasets.append(spec)
        build_dataset(sf.session, spec, sf.workspace)
    sf.save()
    return "chat-a", "chat-b"


async def test_mix_two_datasets_in_the_pane_and_build_the_mix(session_path: Path):
    a, b = _two_built_chat_sets(session_path)
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(DataPane)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("home", "ctrl+k", *f"{a}, odile-nope", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)  # refused in the dialog: not a dataset
        assert "'odile-nope' is not a dataset" in str(app.screen.query_one("#prompt-error").render())
        await pilot.press("home", "ctrl+k", *f"{a}, odile-docs", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)  # refused as the CLI refuses it: not built yet
        assert "'odile-docs', which has not been built yet" in str(app.screen.query_one("#prompt-error").render())
        await pilot.press("home", "ctrl+k", *f"{a}, {b}", "enter")
        await until(pilot, lambda: on_disk(session_path).datasets[-1].mix == [a, b], what="the mix on disk")
        mixed = on_disk(session_path).datasets[-1]
        assert mixed.mix == [a, b] and mixed.format == "chat_demos" and mixed.size == 0
        assert pane.spec.id == mixed.id
        app.query_one(DatasetList).focus()
        await pilot.press("b")
        await until(pilot, lambda: data_reader.read_stats(pane.workspace, mixed.id) is not None)
        stats = data_reader.read_stats(pane.workspace, mixed.id)
        parts = [data_reader.read_stats(pane.workspace, x) for x in (a, b)]
        assert stats["generator"] == "mix"
        # Train pooled with train, held-out with held-out; only exact duplicates across them go.
        assert stats["train"] + stats["heldout"] + stats["exact_duplicates_removed"] == sum(
            p["train"] + p["heldout"] for p in parts
        )
        assert stats["train"] > max(p["train"] for p in parts)
        sources = {r["meta"]["mixed_from"] for r in data_reader.load_records(pane.workspace, mixed.id)}
        assert sources == {a, b}


def test_mix_through_the_cli(session_path: Path):
    import os
    import subprocess
    import sys

    a, b = _two_built_chat_sets(session_path)

    def data(*args):
        return subprocess.run(
            [sys.executable, "-m", "persona_tui.cli", "data", str(session_path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "120"},
        )

    before = session_path.read_bytes()
    one = data("--mix", "solo", a)
    assert one.returncode == 2 and "at least two different datasets" in one.stderr
    unbuilt = data("--mix", "with-docs", f"{a},odile-docs")
    assert unbuilt.returncode == 2 and "'odile-docs', which has not been built yet" in unbuilt.stderr
    assert session_path.read_bytes() == before  # refused mixes are not saved
    done = data("--mix", "both", f"{a},{b}")
    assert done.returncode == 0, done.stderr
    assert "a mix of chat-a, chat-b" in done.stdout and "examples" in done.stdout
    assert on_disk(session_path).dataset("both").mix == [a, b]
    assert data_reader.is_built(session_path.with_suffix(""), "both")


async def test_import_options_context_lines_and_persona_source(session_path: Path):
    from sessions.model import DatasetSpec

    sf = SessionFile.load(session_path)
    sf.session.datasets.append(DatasetSpec(id="spc", format="persona_chat", generator="import", source="x.csv"))
    sf.session.datasets.append(DatasetSpec(id="tl", format="tailoring_sft", generator="import", source="y.jsonl"))
    sf.save()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(DataPane)
        app.query_one(DatasetList).index = len(sf.session.datasets) - 2
        await pilot.pause()
        assert pane.spec.id == "spc" and not app.query_one("#data-context").display
        app.query_one("#data-variant", Select).value = "context"
        await pilot.pause()
        assert app.query_one("#data-context").display and not app.query_one("#data-persona-source").display
        await set_input(pilot, app.query_one("#data-context", Input), "5")
        await until(pilot, lambda: on_disk(session_path).dataset("spc").context_lines == 5, what="the autosave")
        saved = on_disk(session_path).dataset("spc")
        assert (saved.variant, saved.context_lines) == ("context", 5)
        await set_input(pilot, app.query_one("#data-context", Input), "0")
        await pilot.pause()
        assert app.query_one("#data-context").has_class("-invalid")

        app.query_one(DatasetList).index = len(sf.session.datasets) - 1
        await pilot.pause()
        assert pane.spec.id == "tl" and app.query_one("#data-persona-source").display
        assert not app.query_one("#data-context").display
        app.query_one("#data-persona-source", Select).value = "none"
        await until(
            pilot,
            lambda: on_disk(session_path).dataset("tl").extra.get("persona_source") == "none",
            what="the autosave",
        )
        assert on_disk(session_path).dataset("tl").extra["persona_source"] == "none"


async def test_build_takes_the_unsaved_spec_and_a_reopened_pane_follows_a_build(session_path: Path, monkeypatch):
    """b builds the spec as shown, before any autosave; a build made elsewhere is picked up."""
    from supervisor import jobs
    from trainers.data.job import job_spec

    monkeypatch.setenv("PERSONA_TUI_AUTOSAVE_SECONDS", "600")  # nothing is saved during this test
    before = session_path.read_bytes()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(DataPane)
        spec_id = pane.spec.id
        await set_input(pilot, app.query_one("#data-size", Input), "7")
        await until(pilot, lambda: pane.spec.size == 7, what="the form's edit")
        app.query_one(DatasetList).focus()
        await pilot.press("b")
        await until(pilot, lambda: len(pane.rows) > 0, what="the build's examples")
        stats = data_reader.read_stats(SessionFile.load(session_path).workspace, spec_id)
        assert stats["requested"] == 7 and stats["count"] <= 7
        assert session_path.read_bytes() == before  # the build needed no save
        assert not [n for n in app._notifications if n.severity == "error"]

    # A build made by someone else (a queued job, started later): the reopened pane follows it.
    sf = SessionFile.load(session_path)
    sf.session.dataset(spec_id).size = 5
    job_dir = jobs.create_job(sf.workspace, "dataset", job_spec(sf, spec_id))
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        pane = app.query_one(DataPane)
        state = app.query_one("#data-job-state", Static)
        await until(
            pilot, lambda: pane.job_dir is not None and "queued" in str(state.render()), what="the queued build shown"
        )
        jobs.start_job(job_dir)
        await until(
            pilot,
            lambda: any(n.title == "Dataset built" for n in app._notifications),
            timeout=120,
            what="the build's end announced",
        )
        await until(pilot, lambda: len(pane.rows) > 0 and pane.job_dir is None, what="the new examples")
        assert data_reader.read_stats(sf.workspace, spec_id)["requested"] == 5
