"""Pilot tests of the Personas pane: a person's edits reach the file and survive a relaunch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual import events
from textual.widgets import Input, Label, TextArea

from persona_tui.app import make_app
from persona_tui.panes.personas import PersonaList, TraitTable
from persona_tui.screens.choice import ChoiceScreen
from persona_tui.screens.probe_editor import ProbeEditor
from persona_tui.screens.text_prompt import TextPrompt
from persona_tui.screens.trait_editor import ProbeTable, TraitEditor
from persona_tui.widgets.session_bar import SessionBar
from sessions.store import SessionFile
from waiting import wait_until as until

pytestmark = pytest.mark.anyio


def on_disk(path: Path):
    return SessionFile.load(path).session


async def type_text(pilot, text: str) -> None:
    await pilot.press(*text)


async def paste(pilot, text: str) -> None:
    """What a terminal sends when a person pastes `text` (a path) into the focused widget."""
    pilot.app.focused.post_message(events.Paste(text))
    await pilot.pause()


def cursor_to_end(app) -> None:
    """Put the focused TextArea's cursor after its last character (a click there would)."""
    area = app.focused
    area.move_cursor(area.document.end)


async def replace_input(pilot, text: str) -> None:
    """Clear the focused Input the way a person would (home, delete to end), then type."""
    await pilot.press("home", "ctrl+k")
    await type_text(pilot, text)


async def test_edit_name_and_summary_autosaves_and_survives_relaunch(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.focused, PersonaList)
        await pilot.press("enter")  # from the list into the persona's form
        assert app.focused.id == "persona-name"
        await replace_input(pilot, "Odile the Elder")
        await pilot.press("tab")
        assert app.focused.id == "persona-summary"
        cursor_to_end(app)
        await type_text(pilot, " She hums shanties.")
        # Debounced: the last keystroke is not on disk yet, and the header says so.
        assert app.dirty
        assert app.query_one(SessionBar).state == "unsaved"
        assert not on_disk(session_path).personas[0].summary.endswith("shanties.")
        await until(pilot, lambda: not app.dirty, what="the autosave")
        assert not app.dirty
        assert app.query_one(SessionBar).state == "saved"
        assert on_disk(session_path).personas[0].name == "Odile the Elder"
        await pilot.press("escape", "q")
    assert not app.is_running

    again = make_app(session_path)
    async with again.run_test(size=(100, 30)) as pilot:
        assert again.query_one("#persona-name", Input).value == "Odile the Elder"
        summary = again.query_one("#persona-summary", TextArea).text
        assert summary.endswith("She hums shanties.")
        # The hand-written comments of the demo file are still there.
        assert session_path.read_text().startswith("# persona-tui demo session")


async def test_add_duplicate_rename_delete(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        session = app.session_file.session
        await pilot.press("a")
        assert [p.id for p in session.personas] == ["odile", "persona"]
        assert app.focused.id == "persona-name"
        await replace_input(pilot, "Bram Tide")
        await pilot.press("escape", "d")
        assert [p.id for p in session.personas] == ["odile", "persona", "persona-copy"]
        assert session.personas[2].name == "Bram Tide (copy)"

        # Rename: a taken id is refused inside the modal, a free one is applied.
        await pilot.press("r")
        assert isinstance(app.screen, TextPrompt)
        await replace_input(pilot, "odile")
        await pilot.press("enter")
        assert isinstance(app.screen, TextPrompt)
        assert "already has the id 'odile'" in str(app.screen.query_one("#prompt-error", Label).render())
        await replace_input(pilot, "../escape")
        await pilot.press("enter")
        assert isinstance(app.screen, TextPrompt)
        await replace_input(pilot, "bram-twin")
        await pilot.press("enter")
        assert not isinstance(app.screen, TextPrompt)
        assert [p.id for p in session.personas] == ["odile", "persona", "bram-twin"]

        # Delete asks first; "n" keeps, "y" deletes.
        await pilot.press("delete")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("n")
        assert len(session.personas) == 3
        await pilot.press("delete")
        await pilot.press("y")
        assert [p.id for p in session.personas] == ["odile", "persona"]

        await until(pilot, lambda: len(on_disk(session_path).personas) == 2, what="the deletion on disk")
        saved = on_disk(session_path)
        assert [(p.id, p.name) for p in saved.personas] == [("odile", "Odile Marsh"), ("persona", "Bram Tide")]


async def test_trait_editing_with_a_knowledge_probe(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        persona = app.session_file.session.personas[0]
        first = persona.traits[0]
        probes_before = len(first.knowledge_probes)
        # Keyboard only: from the list through the form's fields to the trait table.
        for _ in range(3):
            await pilot.press("tab")
        assert isinstance(app.focused, TraitTable)
        await pilot.press("enter")
        assert isinstance(app.screen, TraitEditor)
        assert app.focused.id == "trait-text"
        cursor_to_end(app)
        await type_text(pilot, " Always.")
        app.screen.query_one(ProbeTable).focus()
        await pilot.press("a")
        assert isinstance(app.screen, ProbeEditor)
        await type_text(pilot, "Do you draw maps?")
        await pilot.press("enter")
        await type_text(pilot, "Yes, of everything.")
        await pilot.press("enter")
        await type_text(pilot, "No, never.")
        await pilot.press("enter")
        assert isinstance(app.screen, TraitEditor)
        assert app.screen.query_one(ProbeTable).row_count == probes_before + 1
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, TraitEditor)
        table = app.query_one(TraitTable)
        assert table.get_row_at(0)[1] == str(probes_before + 1)

        # A new trait with no text is refused with a reason; with text it is added.
        table.focus()
        await pilot.press("a")
        assert isinstance(app.screen, TraitEditor)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, TraitEditor)
        assert "needs its text" in str(app.screen.query_one("#trait-error", Label).render())
        await replace_input(pilot, "sings")
        await pilot.press("tab")
        await type_text(pilot, "I sing at the pub on Fridays.")
        await pilot.press("ctrl+s")
        assert persona.traits[-1].id == "sings"

        # Delete the new trait again, after confirming.
        await pilot.press("delete", "y")
        assert persona.traits[-1].id != "sings"

        await until(
            pilot,
            lambda: not app.dirty and on_disk(session_path).personas[0].traits[-1].id != "sings",
            what="the autosave",
        )
        saved = on_disk(session_path).personas[0].traits[0]
        assert saved.text.endswith("Always.")
        probe = saved.knowledge_probes[-1]
        assert (probe.question, probe.affirm, probe.deny) == ("Do you draw maps?", "Yes, of everything.", "No, never.")


CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Wren",
        "description": "A retired airship captain who collects barometers.",
        "personality": "gruff, kind, precise",
        "scenario": "A tea house at the aerodrome.",
        "first_mes": "Mind the ropes.",
        "mes_example": "<START>\n{{char}}: Wind's turning.",
        "creator_notes": "test card",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Ahoy."],
        "character_book": {"entries": [{"keys": ["barometer"], "content": "She owns 40."}]},
        "tags": ["test"],
        "creator": "tests",
        "character_version": "1",
        "extensions": {"x": {"y": [1, 2]}},
    },
}


async def test_import_then_export_a_character_card(session_path: Path, tmp_path: Path):
    card_path = tmp_path / "wren.json"
    card_path.write_text(json.dumps(CARD))
    out_path = tmp_path / "out" / "wren.card.json"
    out_path.parent.mkdir()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        assert isinstance(app.screen, TextPrompt)
        await paste(pilot, str(card_path))
        await pilot.press("enter")
        await pilot.pause()
        session = app.session_file.session
        assert [p.name for p in session.personas] == ["Odile Marsh", "Captain Wren"]
        assert app.query_one(PersonaList).index == 1

        await pilot.press("escape", "e")
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("home", "ctrl+k")
        await paste(pilot, str(out_path))
        await pilot.press("enter")
        await pilot.pause()
        exported = json.loads(out_path.read_text())
        assert exported["spec"] == "chara_card_v2"
        for key in (
            "name",
            "description",
            "scenario",
            "first_mes",
            "alternate_greetings",
            "character_book",
            "tags",
            "extensions",
        ):
            assert exported["data"][key] == CARD["data"][key], key

        await until(
            pilot,
            lambda: [p.name for p in on_disk(session_path).personas] == ["Odile Marsh", "Captain Wren"],
            what="the imported persona on disk",
        )
        assert [p.name for p in on_disk(session_path).personas] == ["Odile Marsh", "Captain Wren"]


async def test_import_a_plain_persona_list(session_path: Path, tmp_path: Path):
    """Synthetic-Persona-Chat style: one "I ..." sentence per line becomes a persona's facts."""
    listing = tmp_path / "sailor.txt"
    listing.write_text("I love to sail.\nI have two dogs.\nI work nights at a bakery.\n")
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        await paste(pilot, str(listing))
        await pilot.press("enter")
        await pilot.pause()
        personas = app.session_file.session.personas
        assert len(personas) == 2
        text = " ".join([*personas[1].facts, *(t.text for t in personas[1].traits)])
        for sentence in ("I love to sail.", "I have two dogs.", "I work nights at a bakery."):
            assert sentence in text
        assert personas[1].id != "odile"


@pytest.mark.parametrize(
    "name, content",
    [
        ("not-a-card.json", json.dumps({"hello": "world"})),
        ("broken.json", "{ this is not json"),
        ("missing.json", None),
    ],
)
async def test_a_bad_card_is_a_notification_and_changes_nothing(session_path: Path, tmp_path: Path, name, content):
    card_path = tmp_path / name
    if content is not None:
        card_path.write_text(content)
    before = session_path.read_text()
    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("i")
        await paste(pilot, str(card_path))
        await pilot.press("enter")
        await pilot.pause()
        errors = [n for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1
        assert name in errors[0].message
        assert len(app.session_file.session.personas) == 1
        assert not app.dirty
        await pilot.press("q")
    assert session_path.read_text() == before


async def test_the_personas_pane_fits_80x24(session_path: Path):
    app = make_app(session_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen.region
        for selector in ("#persona-list", "#persona-name", "#persona-id"):
            widget = app.query_one(selector)
            assert widget.region.width > 0 and screen.contains_region(widget.region), selector
        # The trait editor fits too, buttons included.
        app.query_one(TraitTable).focus()
        await pilot.press("enter")
        assert isinstance(app.screen, TraitEditor)
        await pilot.pause()
        keep = app.screen.query_one("#ok")
        assert keep.region.height > 0 and app.screen.region.contains_region(keep.region)
        await pilot.press("escape", "q")


async def test_t_adds_the_recipe_for_the_persona_and_the_train_pane_lists_its_run(session_path: Path):
    """`t` in the Personas pane is `persona --recipe ID`: the run reaches a Train pane that was
    already open, and the file; on a persona that has it already, it says why and adds nothing."""
    from textual.widgets import ListView

    app = make_app(session_path)
    async with app.run_test(size=(100, 30)) as pilot:
        session = app.session_file.session
        train = await app.pane("train")
        await pilot.pause()
        assert len(train.query_one("#run-list", ListView)) == 1
        await pilot.press("a")  # a new persona, id "persona"; focus in its name field
        await pilot.press("escape", "t")
        assert [r.id for r in session.runs] == ["odile-chat-lora", "persona-chat-lora"]
        assert [e.id for e in session.evals][-1] == "persona-traits"
        assert "general" in session.runs[-1].datasets and session.runs[-1].training.learning_rate == 1e-3
        await until(pilot, lambda: len(train.query_one("#run-list", ListView)) == 2, what="the new run listed")
        await until(
            pilot,
            lambda: [r.id for r in on_disk(session_path).runs] == ["odile-chat-lora", "persona-chat-lora"],
            what="the recipe on disk",
        )

        await pilot.press("up", "t")  # Odile has the recipe already
        await pilot.pause()
        assert [r.id for r in session.runs] == ["odile-chat-lora", "persona-chat-lora"]
        shown = [n.message for n in app._notifications]
        assert any("cannot add the recipe for 'odile': run 'odile-chat-lora' exists" in m for m in shown), shown
