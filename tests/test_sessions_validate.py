"""Every way a session file can be wrong gets one problem naming file, line, field and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sessions.model import Persona, Session, Trait
from sessions.store import SessionFile
from sessions.validate import Problem, SessionError, field_path, key_lines, validate, validate_file

PERSONA = textwrap.dedent(
    """\
    schema = 1
    name = "v"

    [[personas]]
    id = "ada"
    name = "Ada"
    facts = ["I repair clocks."]

    [[personas.traits]]
    id = "clocks"
    text = "I repair clocks."
    expression_probes = ["What did you do today?"]

    [[personas.traits.knowledge_probes]]
    question = "Do you repair clocks?"
    affirm = "Yes."
    deny = "No."
    """
)


def load_problems(path: Path, text: str | bytes) -> list[Problem]:
    """Write `text`, load it, return the problems; the file must be left exactly as it was."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    before = path.read_bytes()
    with pytest.raises(SessionError) as err:
        SessionFile.load(path)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".bak").exists()
    assert "\n" not in str(err.value)
    assert validate_file(path) == err.value.problems
    return err.value.problems


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1]


def one(path: Path, text: str) -> Problem:
    problems = load_problems(path, text)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "demo.toml"


def test_good_file_has_no_problems(path: Path) -> None:
    path.write_text(PERSONA)
    assert validate_file(path) == []
    assert SessionFile.load(path).session.personas[0].traits[0].knowledge_probes[0].deny == "No."


def test_problem_reads_as_file_line_field_message() -> None:
    p = Problem("demo.toml", 12, "personas[0].name", "is empty; give the persona a name.")
    assert str(p) == "demo.toml:12: personas[0].name: is empty; give the persona a name."
    assert str(Problem("demo.toml", None, "", "does not exist.")) == "demo.toml: does not exist."


# --- files that are not session files ----------------------------------------------------------


def test_missing_file(path: Path) -> None:
    with pytest.raises(SessionError) as err:
        SessionFile.load(path)
    assert str(err.value) == f"{path}: does not exist; check the path, or create a session with `persona-tui new PATH`."
    assert not path.exists()


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="is a folder, not a session file"):
        SessionFile.load(tmp_path)


def test_binary_file(path: Path) -> None:
    (p,) = load_problems(path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert p.path == str(path) and "binary file" in p.message


def test_not_utf8(path: Path) -> None:
    (p,) = load_problems(path, 'schema = 1\nname = "caf\xe9"\n'.encode("latin-1"))
    assert p.line == 2 and "not UTF-8" in p.message


@pytest.mark.parametrize(
    "text, line, words",
    [
        ('schema = 1\nname = "unclosed\n', 2, "not valid TOML"),
        ("schema = 1\n[[personas]\nid = 'x'\n", 2, "Unexpected character"),
        ('name = "a"\nname = "b"\n', 2, 'Key "name" already exists'),
        ("facts = [1,\n2\n", 2, "Unexpected end of file"),
    ],
)
def test_invalid_toml_names_the_line(path: Path, text: str, line: int, words: str) -> None:
    (p,) = load_problems(path, text)
    assert p.line == line and words in p.message and "fix the syntax" in p.message
    assert str(p).startswith(f"{path}:{line}: is not valid TOML")


def test_empty_file_is_an_empty_session(path: Path) -> None:
    path.write_text("")
    assert SessionFile.load(path).session == Session()


# --- wrong types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, field, message",
    [
        (
            'facts = ["I repair clocks."]',
            'facts = "I repair clocks."',
            "personas[0].facts",
            'should be a list of text, not text; write facts = ["…", "…"].',
        ),
        ('name = "Ada"', "name = 3", "personas[0].name", 'should be text, not a number; write name = "…".'),
        (
            'expression_probes = ["What did you do today?"]',
            'expression_probes = ["What?", 2]',
            "personas[0].traits[0].expression_probes[1]",
            "should be text, not a number",
        ),
        (
            'deny = "No."',
            "deny = false",
            "personas[0].traits[0].knowledge_probes[0].deny",
            "should be text, not true/false",
        ),
        ('name = "v"', "name = [1]", "name", "should be text, not a list"),
    ],
)
def test_wrong_types(path: Path, old: str, new: str, field: str, message: str) -> None:
    text = PERSONA.replace(old, new)
    p = one(path, text)
    assert p.field == field and message in p.message
    assert p.line == line_of(text, new)


def test_string_where_tables_expected(path: Path) -> None:
    text = 'schema = 1\npersonas = "Ada"\n'
    p = one(path, text)
    assert (p.field, p.line) == ("personas", 2)
    assert p.message.startswith("should be a list of tables, not text")


def test_table_expected_for_card(path: Path) -> None:
    text = PERSONA.replace('facts = ["I repair clocks."]', 'card = "a card"')
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].card", line_of(text, "card ="))
    assert p.message.startswith("should be a table, not text")


@pytest.mark.parametrize(
    "snippet, field, message",
    [
        (
            '[[datasets]]\nid = "d"\nformat = "chat_demos"\nsize = "big"\n',
            "datasets[0].size",
            "should be a whole number, not text",
        ),
        (
            '[[datasets]]\nid = "d"\nformat = "chat_demos"\nheld_out = true\n',
            "datasets[0].held_out",
            "should be a number, not true/false",
        ),
        (
            '[[annotations]]\noutput = "j:0"\nannotator = "sam"\ntrait_labels = "clocks"\n',
            "annotations[0].trait_labels",
            "should be a table, not text",
        ),
        (
            '[[engines]]\nid = "e"\nkind = "llamacpp"\nn_ctx = 2048.5\n',
            "engines[0].n_ctx",
            "should be a whole number, not a number",
        ),
    ],
)
def test_wrong_types_in_specs(path: Path, snippet: str, field: str, message: str) -> None:
    text = PERSONA + "\n" + snippet
    p = one(path, text)
    assert p.field == field and p.message.startswith(message)
    assert p.line == len(text.splitlines())


# --- missing and empty fields ------------------------------------------------------------------


def test_missing_persona_id(path: Path) -> None:
    text = PERSONA.replace('id = "ada"\n', "")
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].id", line_of(text, "[[personas]]"))
    assert p.message == 'is missing; add id = "…".'


def test_missing_probe_answer(path: Path) -> None:
    text = PERSONA.replace('deny = "No."\n', "")
    p = one(path, text)
    assert (p.field, p.line) == (
        "personas[0].traits[0].knowledge_probes[0].deny",
        line_of(text, "[[personas.traits.knowledge_probes]]"),
    )


def test_probe_with_an_empty_answer_names_trait_and_probe(path: Path) -> None:
    text = PERSONA.replace('affirm = "Yes."', 'affirm = " "')
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[0].knowledge_probes[0].affirm", line_of(text, 'affirm = " "'))
    assert p.message == "is empty in trait 'clocks' knowledge probe 1; write the probe's affirm."


def test_probe_with_identical_answers_is_refused(path: Path) -> None:
    text = PERSONA.replace('deny = "No."', 'deny = "  yes. "')
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[0].knowledge_probes[0].deny", line_of(text, 'deny = "  yes. "'))
    assert p.message.startswith("is the same as affirm in trait 'clocks' knowledge probe 1")


def test_empty_persona_name(path: Path) -> None:
    text = PERSONA.replace('name = "Ada"', 'name = "  "')
    p = one(path, text)
    line = line_of(text, 'name = "  "')
    assert str(p) == f"{path}:{line}: personas[0].name: is empty; give the persona a name."


def test_empty_trait_text(path: Path) -> None:
    text = PERSONA.replace('text = "I repair clocks."', 'text = ""')
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[0].text", line_of(text, 'text = ""'))
    assert p.message.startswith("is empty; write the trait")


def test_missing_trait_text(path: Path) -> None:
    text = PERSONA.replace('text = "I repair clocks."\n', "")
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[0].text", line_of(text, "[[personas.traits]]"))


def test_empty_probe_question(path: Path) -> None:
    text = PERSONA.replace('question = "Do you repair clocks?"', 'question = ""')
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[0].knowledge_probes[0].question", line_of(text, 'question = ""'))


# --- duplicate ids -----------------------------------------------------------------------------


def test_duplicate_persona_ids(path: Path) -> None:
    text = PERSONA + '\n[[personas]]\nid = "ada"\nname = "Ada again"\n'
    p = one(path, text)
    assert (p.field, p.line) == ("personas[1].id", line_of(text, 'id = "ada"', 2))
    assert p.message == '"ada" is already the id of personas[0]; give each persona its own id.'


def test_duplicate_trait_ids_within_a_persona(path: Path) -> None:
    text = PERSONA + '\n[[personas.traits]]\nid = "clocks"\ntext = "I like clocks."\n'
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].traits[1].id", line_of(text, 'id = "clocks"', 2))


def test_same_trait_id_in_two_personas_is_fine(path: Path) -> None:
    path.write_text(
        PERSONA
        + '\n[[personas]]\nid = "bo"\nname = "Bo"\n\n[[personas.traits]]\nid = "clocks"\ntext = "I hate clocks."\n'
    )
    assert validate_file(path) == []


@pytest.mark.parametrize(
    "table, body",
    [
        ("datasets", 'format = "chat_demos"'),
        ("runs", ""),
        ("engines", 'kind = "llamacpp"'),
        ("evals", 'kind = "traits"'),
    ],
)
def test_duplicate_spec_ids(path: Path, table: str, body: str) -> None:
    text = PERSONA + "".join(f'\n[[{table}]]\nid = "same"\n{body}\n' for _ in range(2))
    p = one(path, text)
    assert (p.field, p.line) == (f"{table}[1].id", line_of(text, 'id = "same"', 2))
    assert f"{table}[0]" in p.message


# --- enums and references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "snippet, field, bad",
    [
        ('[[datasets]]\nid = "d"\nformat = "chat_demo"\n', "datasets[0].format", "chat_demo"),
        ('[[datasets]]\nid = "d"\nformat = "chat_demos"\ngenerator = "magic"\n', "datasets[0].generator", "magic"),
        ('[[engines]]\nid = "e"\nkind = "llama"\n', "engines[0].kind", "llama"),
    ],
)
def test_unknown_enum_values(path: Path, snippet: str, field: str, bad: str) -> None:
    text = PERSONA + "\n" + snippet
    p = one(path, text)
    assert (p.field, p.line) == (field, len(text.splitlines()))
    assert p.message.startswith(f'"{bad}" is not one of ') and p.message.endswith("use one of those.")


@pytest.mark.parametrize(
    "snippet, field, ref",
    [
        ('[[datasets]]\nid = "d"\nformat = "chat_demos"\npersona = "zed"\n', "datasets[0].persona", 'persona "zed"'),
        ('[[datasets]]\nid = "d"\nformat = "chat_demos"\nengine = "gpt"\n', "datasets[0].engine", 'engine "gpt"'),
        ('[[datasets]]\nid = "d"\nformat = "chat_demos"\nmix = ["d2"]\n', "datasets[0].mix[0]", 'dataset "d2"'),
        (
            '[[datasets]]\nid = "d"\nformat = "chat_demos"\n\n[[runs]]\nid = "r"\ndatasets = ["d", "gone"]\n',
            "runs[0].datasets[1]",
            'dataset "gone"',
        ),
    ],
)
def test_references_to_missing_ids(path: Path, snippet: str, field: str, ref: str) -> None:
    text = PERSONA + "\n" + snippet
    p = one(path, text)
    assert (p.field, p.line) == (field, len(text.splitlines()))
    assert p.message.startswith(f"names {ref}, which this session does not have")


@pytest.mark.parametrize(
    "snippet, field",
    [
        ('[[datasets]]\nid = "d"\nformat = "chat_demos"\nheld_out = 1.5\n', "datasets[0].held_out"),
        ('[[annotations]]\noutput = "j:0"\nannotator = "sam"\nconsistency = 9\n', "annotations[0].consistency"),
        (
            '[[annotations]]\noutput = "j:0"\nannotator = "sam"\n[annotations.trait_labels]\nclocks = "maybe"\n',
            "annotations[0].trait_labels.clocks",
        ),
    ],
)
def test_out_of_range_values(path: Path, snippet: str, field: str) -> None:
    text = PERSONA + "\n" + snippet
    p = one(path, text)
    assert (p.field, p.line) == (field, len(text.splitlines()))


# --- ids that would escape the workspace ---------------------------------------------------------

UNSAFE_IDS = {
    '"../x"': "path separator",
    '"/etc/passwd"': "path separator",
    '"a\\\\b"': "path separator",
    '"a\\u0000b"': "NUL",
    '"."': "reserved name",
    '".."': "reserved name",
    '"CON"': "reserved device name",
    '"nul.txt"': "reserved device name",
    '""': "is empty",
    '"' + "x" * 65 + '"': "more than 64",
    '".hidden"': "starts with '.'",
    '"-rf"': "starts with '-'",
    '"two words"': "contains ' '",
    '"tilde~"': "contains '~'",
}


@pytest.mark.parametrize("raw", list(UNSAFE_IDS))
def test_unsafe_persona_ids_are_refused(path: Path, raw: str) -> None:
    text = PERSONA.replace('id = "ada"', f"id = {raw}")
    p = one(path, text)
    assert (p.field, p.line) == ("personas[0].id", line_of(text, f"id = {raw}"))
    assert UNSAFE_IDS[raw] in p.message and "ids become file names" in p.message


@pytest.mark.parametrize(
    "table, body", [("datasets", 'format = "chat_demos"'), ("runs", ""), ("engines", 'kind = "openai"'), ("evals", "")]
)
def test_unsafe_spec_ids_are_refused(path: Path, table: str, body: str) -> None:
    text = PERSONA + f'\n[[{table}]]\nid = "../../escape"\n{body}\n'
    p = one(path, text)
    assert (p.field, p.line) == (f"{table}[0].id", line_of(text, "escape"))


def test_dataset_id_that_names_a_heldout_file(path: Path) -> None:
    text = PERSONA + '\n[[datasets]]\nid = "d.heldout"\nformat = "chat_demos"\n'
    p = one(path, text)
    assert p.field == "datasets[0].id" and ".heldout" in p.message


# --- many problems at once; lines in tricky text ---------------------------------------------------


def test_every_problem_is_listed(path: Path) -> None:
    text = PERSONA.replace('name = "Ada"', 'name = ""').replace('text = "I repair clocks."', 'text = ""')
    text += '\n[[datasets]]\nid = "d"\nformat = "nope"\npersona = "zed"\n'
    problems = load_problems(path, text)
    assert [p.field for p in problems] == [
        "personas[0].name",
        "personas[0].traits[0].text",
        "datasets[0].format",
        "datasets[0].persona",
    ]
    with pytest.raises(SessionError, match=r"personas\[0\]\.name: is empty; .* \(and 3 more problems\)$"):
        SessionFile.load(path)


def test_wrong_types_and_semantic_problems_are_both_listed_once(path: Path) -> None:
    text = PERSONA.replace('name = "Ada"', "name = 1").replace('id = "ada"', 'id = "../x"')
    text = text.replace('text = "I repair clocks."\n', "")
    problems = load_problems(path, text)
    # name = 1 is reported as a wrong type only, not again as "is empty"; problems in file order.
    assert [p.field for p in problems] == ["personas[0].id", "personas[0].name", "personas[0].traits[0].text"]
    assert [p.message.split(";")[0] for p in problems] == [
        "\"../x\" contains a path separator ('/' or '\\') and ids become file names",
        "should be text, not a number",
        "is missing",
    ]


def test_lines_are_right_after_multiline_strings_and_arrays(path: Path) -> None:
    text = textwrap.dedent(
        '''\
        schema = 1
        notes = """
        [[personas]]
        id = "not a table"
        """
        literal = \'\'\'
        [[personas]]\'\'\'
        list = [
          "[[personas]]",  # a comment with [[brackets]]
          { a = "]" },
        ]
        "quoted.key" = 'a # not a comment'

        [[personas]]
        id = "a"
        name = "A"

        [[personas]]
        id = "b"
        name = ""
        '''
    )
    p = one(path, text)
    assert (p.field, p.line) == ("personas[1].name", 20)


def test_key_lines_follows_nested_arrays_of_tables() -> None:
    text = PERSONA + '\n[personas.card]\nscenario = "x"\n\n[[personas]]\nid = "b"\n[[personas.traits]]\nid = "t"\n'
    lines = key_lines(text)
    assert lines[("personas", 0, "traits", 0, "knowledge_probes", 0, "deny")] == line_of(text, 'deny = "No."')
    assert lines[("personas", 0, "card", "scenario")] == line_of(text, "scenario")
    assert lines[("personas", 1, "traits", 0)] == len(text.splitlines()) - 1
    assert lines[("personas", 1, "traits", 0, "id")] == len(text.splitlines())


def test_field_path_quotes_odd_keys() -> None:
    assert field_path(("personas", 2, "traits", 0, "text")) == "personas[2].traits[0].text"
    assert field_path(("runs", 0, "odd key")) == 'runs[0]."odd key"'


def test_validate_in_memory_has_no_lines() -> None:
    session = Session(personas=[Persona(id="p", name="P", traits=[Trait(id="t", text=" ")])])
    (p,) = validate(session, "mem.toml")
    assert (
        str(p) == 'mem.toml: personas[0].traits[0].text: is empty; write the trait as a sentence, e.g. "I keep bees."'
    )
