"""Character Cards (V2, V1, PNG) and Synthetic-Persona-Chat persona lists, in and out."""

from __future__ import annotations

import base64
import copy
import json
import struct
import zlib
from pathlib import Path

import pytest

from sessions import cards
from sessions.cards import CardError, export_card, import_card, read_persona_list, write_card
from sessions.model import KnowledgeProbe, Persona, Session, Trait
from sessions.store import SessionFile

RICH_CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Ysolde Brack",
        "description": "{{char}} commands the salvage barge *Patience*.\nShe is fifty, scarred and patient.",
        "personality": "gruff, loyal, superstitious about whistling on deck",
        "scenario": "{{user}} has just signed on as a deckhand.",
        "first_mes": '*looks you over* "You\'ll do. Stow your gear below."',
        "mes_example": (
            "<START>\n{{user}}: What are we hauling?\n{{char}}: Scrap, mostly. And trouble.\n"
            "It follows the scrap.\n<START>\n{{char}}: Don't whistle on my deck.\n{{user}}: Why not?\n"
            "{{char}}: Whistling calls the wind, and the wind has opinions."
        ),
        "creator_notes": "Works best with a low temperature.",
        "system_prompt": "You are {{char}}. Stay in character. {{original}}",
        "post_history_instructions": "Keep replies under 80 words.",
        "alternate_greetings": ['*spits over the rail* "New blood."', '"Late. Again."'],
        "character_book": {
            "name": "Brack's world",
            "description": None,
            "scan_depth": 4,
            "token_budget": 512,
            "recursive_scanning": False,
            "extensions": {"world_info": {"depth": 2}},
            "entries": [
                {
                    "keys": ["Patience", "barge"],
                    "content": "The Patience is a rust-red salvage barge with a crane named Gus.",
                    "extensions": {"position": 0, "probability": 100, "useProbability": True},
                    "enabled": True,
                    "insertion_order": 100,
                    "case_sensitive": None,
                    "name": "the barge",
                    "priority": 10,
                    "id": 0,
                    "comment": "",
                    "selective": True,
                    "secondary_keys": [],
                    "constant": False,
                    "position": "before_char",
                },
                {
                    "keys": ["Gus"],
                    "content": "Gus the crane groans in cold weather.",
                    "extensions": {},
                    "enabled": False,
                    "insertion_order": 5,
                },
            ],
        },
        "tags": ["nautical", "salvage", "female"],
        "creator": "persona-tui tests",
        "character_version": "1.2",
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "Brack's world",
            "depth_prompt": {"prompt": "Brack distrusts calm seas.", "depth": 4, "role": "system"},
            "chub": {"id": 12345, "full_path": "someone/brack", "related_lorebooks": [], "alt_expressions": {}},
            "weights": [0.25, 1, -3, 1e-9],
            "nested": {"a": {"b": {"c": [1, [2, 3], {"d": "e"}]}}},
        },
    },
}


def as_json(value: object) -> object:
    return json.loads(json.dumps(value))


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=2))
    return path


def test_rich_v2_card_survives_import_session_file_and_export(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "brack.json", RICH_CARD))
    assert persona.name == "Captain Ysolde Brack" and persona.id == "captain-ysolde-brack"
    assert persona.summary == RICH_CARD["data"]["description"]
    assert persona.style == RICH_CARD["data"]["personality"]
    assert persona.examples == [
        "Scrap, mostly. And trouble.\nIt follows the scrap.",
        "Don't whistle on my deck.",
        "Whistling calls the wind, and the wind has opinions.",
    ]
    # Through a session file on disk and back: TOML must not lose or change anything.
    sf = SessionFile.create(tmp_path / "s.toml", Session(personas=[persona]))
    loaded = SessionFile.load(sf.path).session.personas[0]
    assert loaded == persona
    exported = export_card(loaded)
    assert as_json(exported) == as_json(RICH_CARD)
    assert exported["data"]["character_book"] == RICH_CARD["data"]["character_book"]
    assert exported["data"]["extensions"] == RICH_CARD["data"]["extensions"]


def test_every_v2_field_survives(tmp_path: Path) -> None:
    exported = export_card(import_card(write_json(tmp_path / "c.json", RICH_CARD)))["data"]
    for key in cards.CARD_FIELDS:
        assert exported[key] == RICH_CARD["data"][key], key


def test_write_card_then_import_again(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "in.json", RICH_CARD))
    out = write_card(persona, tmp_path / "out.json")
    assert json.loads(out.read_text()) == as_json(RICH_CARD)
    assert import_card(out) == persona


def test_edited_examples_export_in_card_convention(tmp_path: Path) -> None:
    persona = import_card(write_json(tmp_path / "c.json", RICH_CARD))
    persona.examples = ["Scrap, mostly.", "Mind the crane."]
    mes = export_card(persona)["data"]["mes_example"]
    assert mes == "<START>\n{{char}}: Scrap, mostly.\n<START>\n{{char}}: Mind the crane."
    assert cards.split_examples(mes) == persona.examples


def test_lossless_example_split_keeps_no_copy(tmp_path: Path) -> None:
    card = copy.deepcopy(RICH_CARD)
    card["data"]["mes_example"] = cards.join_examples(["One.", "Two."])
    persona = import_card(write_json(tmp_path / "c.json", card))
    assert persona.examples == ["One.", "Two."] and "mes_example" not in persona.card
    assert export_card(persona)["data"]["mes_example"] == card["data"]["mes_example"]


@pytest.mark.parametrize(
    "mes, examples",
    [
        ("<START>\nHello there.\n\n<START>\nGoodbye.", ["Hello there.", "Goodbye."]),
        ("Hello there.\nGoodbye.\n", ["Hello there.", "Goodbye."]),
        ("", []),
        ("<BOT>: Ahoy.\n<USER>: Hi.\n<BOT>: Aye.", ["Ahoy.", "Aye."]),
    ],
)
def test_example_split_shapes(tmp_path: Path, mes: str, examples: list[str]) -> None:
    card = copy.deepcopy(RICH_CARD)
    card["data"]["mes_example"] = mes
    persona = import_card(write_json(tmp_path / "c.json", card))
    assert persona.examples == examples
    assert export_card(persona)["data"]["mes_example"] == mes


def test_facts_and_traits_travel_in_an_extension(tmp_path: Path) -> None:
    persona = Persona(
        id="odile",
        name="Odile",
        summary="A cartographer.",
        facts=["I am 67."],
        traits=[
            Trait(
                id="bees",
                text="I keep bees.",
                knowledge_probes=[KnowledgeProbe("Bees?", "Yes.", "No.")],
                markers=["hive"],
            )
        ],
    )
    card = export_card(persona)
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    assert card["data"]["extensions"]["persona_tui"]["facts"] == ["I am 67."]
    assert set(card["data"]) >= set(cards.CARD_FIELDS) - {"character_book"}
    back = import_card(write_json(tmp_path / "o.json", card))
    assert (back.facts, back.traits, back.summary) == (persona.facts, persona.traits, persona.summary)
    assert "persona_tui" not in back.card.get("extensions", {})
    assert as_json(export_card(back)) == as_json(card)


def test_v1_card_is_read(tmp_path: Path) -> None:
    v1 = {
        "name": "Old Tom",
        "description": "A lighthouse cat.",
        "personality": "aloof",
        "scenario": "A stormy night.",
        "first_mes": "*stares*",
        "mes_example": "{{char}}: Mrrp.",
        "creatorcomment": "From TavernAI.",
        "avatar": "none",
    }
    persona = import_card(write_json(tmp_path / "tom.json", v1))
    assert (persona.name, persona.summary, persona.style, persona.examples) == (
        "Old Tom",
        "A lighthouse cat.",
        "aloof",
        ["Mrrp."],
    )
    data = export_card(persona)["data"]
    assert data["scenario"] == "A stormy night." and data["first_mes"] == "*stares*"
    assert data["mes_example"] == "{{char}}: Mrrp." and data["creator_notes"] == "From TavernAI."
    assert "avatar" not in data


def test_unknown_data_fields_of_newer_cards_are_kept(tmp_path: Path) -> None:
    card = copy.deepcopy(RICH_CARD)
    card["spec"] = "chara_card_v3"
    card["data"]["nickname"] = "Cap"
    card["data"]["group_only_greetings"] = []
    persona = import_card(write_json(tmp_path / "v3.json", card))
    data = export_card(persona)["data"]
    assert data["nickname"] == "Cap" and data["group_only_greetings"] == []


def test_card_in_a_png(tmp_path: Path) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    payload = base64.b64encode(json.dumps(RICH_CARD).encode())
    png = (
        cards.PNG_MAGIC
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", b"chara\x00" + payload)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00"))
        + chunk(b"IEND", b"")
    )
    path = tmp_path / "brack.png"
    path.write_bytes(png)
    assert as_json(export_card(import_card(path))) == as_json(RICH_CARD)


def test_imported_id_avoids_taken_ids(tmp_path: Path) -> None:
    path = write_json(tmp_path / "c.json", RICH_CARD)
    assert import_card(path, taken=["captain-ysolde-brack"]).id == "captain-ysolde-brack-2"


@pytest.mark.parametrize(
    "content, words",
    [
        ([1, 2, 3], "is not a Character Card: it holds a list"),
        ({"hello": "world"}, 'is not a Character Card: it has no "spec": "chara_card_v2" and no V1 fields'),
        ({"spec": "chara_card_v9", "data": {}}, 'is a "chara_card_v9" card'),
        ({"spec": "chara_card_v2", "data": "nope"}, 'has no "data" object'),
        ({"spec": "chara_card_v2", "data": {"name": ""}}, "the card has no name"),
        ({"spec": "chara_card_v2", "data": {"name": "X", "tags": "a,b"}}, "data.tags should be a list of text"),
        (
            {"spec": "chara_card_v2", "data": {"name": "X", "description": 5}},
            "data.description should be text, not a number",
        ),
    ],
)
def test_json_that_is_not_a_card(tmp_path: Path, content: object, words: str) -> None:
    path = write_json(tmp_path / "x.json", content)
    with pytest.raises(CardError) as err:
        import_card(path)
    message = str(err.value)
    assert message.startswith(str(path)) and words in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize(
    "data, words",
    [
        (b"{not json", "line 1 column 2 is not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IEND\xaeB`\x82", "a PNG without an embedded Character Card"),
        (b"\xff\xfe\x00\x01binary", "is not JSON text"),
    ],
)
def test_bad_card_files(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(CardError, match=words):
        import_card(path)


def test_missing_card_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="does not exist"):
        import_card(tmp_path / "nope.json")
    with pytest.raises(CardError, match="is a folder"):
        import_card(tmp_path)


# --- Synthetic-Persona-Chat persona lists -----------------------------------------------------


def test_persona_list_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ski_lover.txt"
    path.write_text("I love to ski.\nI have two dogs.\n\nyour persona: I work at a bank.\n- I have two dogs.\n")
    persona = read_persona_list(path)
    assert persona.name == "Ski lover" and persona.id == "ski-lover"
    assert persona.facts == ["I love to ski.", "I have two dogs.", "I work at a bank.", "I have two dogs."]
    assert [t.id for t in persona.traits] == [
        "i-love-to-ski",
        "i-have-two-dogs",
        "i-work-at-a-bank",
        "i-have-two-dogs-2",
    ]
    assert [t.text for t in persona.traits] == persona.facts
    out = cards.write_persona_list(persona, tmp_path / "out.txt")
    assert out.read_text() == "I love to ski.\nI have two dogs.\nI work at a bank.\nI have two dogs.\n"
    again = read_persona_list(out)
    assert again.facts == persona.facts and [t.id for t in again.traits] == [t.id for t in persona.traits]
    # A persona list imported into a session validates and saves.
    SessionFile.create(tmp_path / "s.toml", Session(personas=[persona]))


def test_persona_list_from_traits_when_no_facts() -> None:
    persona = Persona(id="p", name="P", traits=[Trait(id="a", text="I sail."), Trait(id="b", text="I  sing\nloudly.")])
    assert cards.persona_list_text(persona) == "I sail.\nI sing loudly.\n"


@pytest.mark.parametrize(
    "data, words",
    [(b"\n\n  \n", "has no persona lines"), (b"\x00\x01\x02", "binary file"), (b"I am \xff\n", "not UTF-8")],
)
def test_bad_persona_lists(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(data)
    with pytest.raises(CardError, match=words):
        read_persona_list(path)


def test_card_nulls_stay_readable_toml_and_come_back(tmp_path: Path) -> None:
    """Lorebook nulls are listed by path, so the book stays a TOML table; a null inside a list
    (which TOML cannot hold at all) falls back to JSON text for that one field."""
    card = copy.deepcopy(RICH_CARD)
    card["data"]["extensions"]["odd"] = [1, None]
    persona = import_card(write_json(tmp_path / "c.json", card))
    sf = SessionFile.create(tmp_path / "s.toml", Session(personas=[persona]))
    text = sf.path.read_text()
    assert "[personas.card.character_book]" in text and "[[personas.card.character_book.entries]]" in text
    assert 'character_book = [["description"], ["entries", 0, "case_sensitive"]]' in text
    assert "extensions = " in text  # the JSON-text fallback
    assert as_json(export_card(SessionFile.load(sf.path).session.personas[0])) == as_json(card)
