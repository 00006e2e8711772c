"""Session files on disk: round-trips that keep a person's edits, atomic saves, schema refusal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomlkit

from sessions import codec, store
from sessions.model import Annotation, DatasetSpec, KnowledgeProbe, Persona, RunSpec, Session, Trait
from sessions.store import SaveError, SessionError, SessionFile

REPO = Path(__file__).resolve().parents[1]

HAND_WRITTEN = textwrap.dedent(
    '''\
    # My session, kept in git.
    schema = 1
    name = "hand"  # the session's name
    owner = "sam"  # a top-level key this version does not know

    # The first persona.
    [[personas]]
    id = "ada"   # keep this id stable
    name = "Ada"
    mood = "wry"  # unknown persona key
    summary = """
    Ada repairs clocks.
    She hums while she works."""
    facts = [
        "I repair clocks.",  # first fact
        "I hum while I work.",
    ]

    # Traits follow.
    [[personas.traits]]
    id = "clocks"
    text = "I repair clocks."
    colour = "brass"  # unknown trait key
    expression_probes = ["What did you do today?"]

    [[personas.traits.knowledge_probes]]
    question = "Do you repair clocks?"
    affirm = "Yes."
    deny = "No."
    weight = 2  # unknown probe key

    [personas.card]
    scenario = "A workshop."
    tags = ["clocks"]

    [personas.notes]  # an unknown sub-table
    a = 1

    [[personas]]
    id = "bo"
    name = "Bo"

    [[engines]]
    id = "local"
    kind = "llamacpp"
    gpu_layers = 0  # unknown engine key

    [[datasets]]
    id = "ada-chat"
    format = "chat_demos"
    persona = "ada"
    shuffle = true  # unknown dataset key

    [[runs]]
    id = "r1"
    datasets = ["ada-chat"]

    [runs.lora]  # a nested settings table
    r = 8

    [runs.schedule]  # unknown nested table inside a spec
    nightly = true

    [[evals]]
    id = "e1"
    kind = "traits"
    judge = "none"

    [[annotations]]
    output = "job1:0"
    annotator = "sam"
    consistency = 4
    mood = "tired"

    [annotations.trait_labels]
    clocks = "expressed"
    '''
)


@pytest.fixture
def hand_file(tmp_path: Path) -> Path:
    path = tmp_path / "hand.toml"
    path.write_text(HAND_WRITTEN)
    return path


def comment_lines(text: str) -> list[str]:
    return [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]


def test_load_reads_every_level_and_keeps_unknown_keys(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    s = sf.session
    assert s.name == "hand" and s.extra == {"owner": "sam"}
    ada = s.personas[0]
    assert ada.summary == "Ada repairs clocks.\nShe hums while she works."
    assert ada.extra == {"mood": "wry", "notes": {"a": 1}}
    assert ada.traits[0].extra == {"colour": "brass"}
    assert ada.traits[0].knowledge_probes[0] == KnowledgeProbe("Do you repair clocks?", "Yes.", "No.", {"weight": 2})
    assert ada.card == {"scenario": "A workshop.", "tags": ["clocks"]}
    assert s.engines[0].extra == {"gpu_layers": 0}
    assert s.datasets[0].extra == {"shuffle": True}
    assert s.runs[0].extra == {"schedule": {"nightly": True}} and s.runs[0].lora.r == 8
    assert s.evals[0].extra == {"judge": "none"}
    assert s.annotations[0].trait_labels == {"clocks": "expressed"}
    assert s.annotations[0].extra == {"mood": "tired"}
    assert sf.workspace == hand_file.with_suffix("")
    assert not sf.changed()


def test_unchanged_save_is_byte_identical(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    assert sf.save() is False  # nothing changed: nothing written
    assert sf.save(force=True) is True
    assert hand_file.read_text() == HAND_WRITTEN


def test_edits_keep_comments_unknown_keys_and_key_order(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    ada = sf.session.personas[0]
    ada.name = "Ada Lovelock"
    ada.facts.append("I own a cat.")
    ada.style = "brisk"
    ada.traits[0].knowledge_probes.append(KnowledgeProbe("Are clocks boring?", "Never.", "Yes."))
    ada.traits.append(Trait(id="cat", text="I own a cat.", expression_probes=["Who is waiting at home?"]))
    sf.session.personas.append(Persona(id="cy", name="Cy", summary="two\nlines"))
    sf.session.datasets.append(DatasetSpec(id="cy-chat", format="first_person", persona="cy"))
    sf.session.annotations.append(Annotation(output="job1:1", annotator="sam", consistency=2))
    assert sf.changed()
    assert sf.save() is True
    assert not sf.changed()

    text = hand_file.read_text()
    assert comment_lines(text) == comment_lines(HAND_WRITTEN)
    for line in (
        'owner = "sam"',
        'mood = "wry"',
        'colour = "brass"',
        "weight = 2",
        "gpu_layers = 0",
        "shuffle = true",
        "[runs.schedule]",
        'judge = "none"',
        'mood = "tired"',
        "[personas.notes]",
    ):
        assert line in text, line
    # Keys of the edited persona stay where they were; the new key goes after the last value.
    order = [
        text.index(k)
        for k in (
            'id = "ada"',
            'name = "Ada Lovelock"',
            'mood = "wry"',
            "summary =",
            "facts =",
            'style = "brisk"',
            "[[personas.traits]]",
        )
    ]
    assert order == sorted(order)
    assert text.startswith("# My session, kept in git.\nschema = 1\n")

    again = SessionFile.load(hand_file)
    assert codec.same(codec.to_plain(again.session), codec.to_plain(sf.session))
    assert [p.id for p in again.session.personas] == ["ada", "bo", "cy"]
    assert again.session.personas[0].traits[1].expression_probes == ["Who is waiting at home?"]


def test_removing_items_drops_only_them(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    del sf.session.personas[1]  # bo
    sf.session.runs.clear()
    del sf.session.extra["owner"]
    sf.session.personas[0].traits[0].knowledge_probes.clear()
    sf.save()
    text = hand_file.read_text()
    assert 'id = "bo"' not in text and "[[runs]]" not in text and "[runs.schedule]" not in text
    assert "owner" not in text and "knowledge_probes" not in text
    assert "# The first persona." in text and 'colour = "brass"' in text
    loaded = SessionFile.load(hand_file).session
    assert [p.id for p in loaded.personas] == ["ada"] and loaded.runs == []


def test_reordered_personas_keep_their_own_comments(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.personas.reverse()
    sf.save()
    loaded = SessionFile.load(hand_file).session
    assert [p.id for p in loaded.personas] == ["bo", "ada"]
    assert loaded.personas[1].extra["mood"] == "wry"
    assert "# keep this id stable" in hand_file.read_text()


def test_comment_on_a_changed_value_is_kept(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.name = "renamed"
    sf.session.personas[0].id = "ada2"
    sf.session.datasets[0].persona = "ada2"
    sf.save()
    text = hand_file.read_text()
    assert 'name = "renamed"  # the session\'s name' in text
    assert 'id = "ada2"   # keep this id stable' in text


def test_new_session_file_is_tidy(tmp_path: Path) -> None:
    session = Session(name="new", personas=[Persona(id="p", name="P", traits=[Trait(id="t", text="I am.")])])
    sf = SessionFile.create(tmp_path / "new.toml", session, header="Made by a test.")
    text = sf.path.read_text()
    assert text.startswith('# Made by a test.\n\nschema = 1\nname = "new"\n')
    # Empty lists and tables are left out of new tables; defaults that say something stay.
    assert "facts" not in text and "card" not in text and "examples" not in text
    assert SessionFile.load(sf.path).session == session


def test_create_refuses_an_existing_file(hand_file: Path) -> None:
    with pytest.raises(SessionError, match="already exists"):
        SessionFile.create(hand_file, Session(name="x"))
    assert hand_file.read_text() == HAND_WRITTEN


def test_create_refuses_an_invalid_session(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match=r"personas\[0\]\.name: is empty"):
        SessionFile.create(tmp_path / "bad.toml", Session(personas=[Persona(id="p", name="")]))
    assert not (tmp_path / "bad.toml").exists()


def test_save_keeps_the_previous_file_as_bak(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.name = "first"
    sf.save()
    assert store.backup_path(hand_file).read_text() == HAND_WRITTEN
    sf.session.name = "second"
    sf.save()
    assert 'name = "first"' in store.backup_path(hand_file).read_text()
    assert 'name = "second"' in hand_file.read_text()
    assert sorted(p.name for p in hand_file.parent.iterdir()) == ["hand.toml", "hand.toml.bak"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_save_leaves_the_old_file_intact(hand_file: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.personas[0].name = "Changed"
    sf.session.personas.append(Persona(id="new", name="New"))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if failing == "replace":
        real = os.replace
        monkeypatch.setattr(os, "replace", lambda src, dst: boom() if Path(dst) == hand_file else real(src, dst))
    elif failing == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    else:
        monkeypatch.setattr(store.tempfile, "mkstemp", boom)
    with pytest.raises(SaveError, match="No space left on device"):
        sf.save()
    monkeypatch.undo()
    assert hand_file.read_text() == HAND_WRITTEN
    assert not [p for p in hand_file.parent.iterdir() if p.name.endswith(".tmp")]
    # The session still holds the edit and a later save writes it correctly.
    assert sf.changed()
    sf.save()
    loaded = SessionFile.load(hand_file).session
    assert loaded.personas[0].name == "Changed" and loaded.persona("new") is not None
    assert "# The first persona." in hand_file.read_text()


def test_process_killed_mid_save_leaves_the_old_file_intact(hand_file: Path) -> None:
    """A real crash: the saving process dies between writing the temp file and renaming it."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from sessions.store import SessionFile
        sf = SessionFile.load({str(hand_file)!r})
        sf.session.name = "never written"
        real = os.replace
        def crash(src, dst):
            if Path(dst) == Path({str(hand_file)!r}):
                os._exit(9)
            real(src, dst)
        os.replace = crash
        sf.save()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == 9, result.stderr.decode()
    assert hand_file.read_text() == HAND_WRITTEN
    assert SessionFile.load(hand_file).session.name == "hand"


def test_newer_schema_is_refused_and_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "future.toml"
    text = '# from the future\nschema = 2\nname = "x"\nhover = true\n'
    path.write_text(text)
    with pytest.raises(SessionError) as err:
        SessionFile.load(path)
    (problem,) = err.value.problems
    assert problem.line == 2 and problem.field == "schema"
    assert "newer persona-tui" in str(err.value) and "upgrade" in str(err.value)
    assert str(err.value).startswith(f"{path}:2: schema: ")
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.toml"]


@pytest.mark.parametrize("value", ['"one"', "0", "1.0"])
def test_bad_schema_value_is_a_problem(tmp_path: Path, value: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"schema = {value}\n")
    with pytest.raises(SessionError, match=r"s\.toml:1: schema: .*write schema = 1"):
        SessionFile.load(path)


def test_older_schema_is_migrated_in_memory_and_written_on_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration table runs version by version; the file changes only when saved."""
    path = tmp_path / "old.toml"
    text = 'schema = 1\nname = "old"\ncolour = "red"\n'
    path.write_text(text)

    def rename_colour(doc: tomlkit.TOMLDocument) -> None:
        doc["color"] = doc.pop("colour")

    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(store.MIGRATIONS, 1, rename_colour)
    sf = SessionFile.load(path)
    assert sf.session.schema == 2 and sf.session.extra == {"color": "red"}
    assert path.read_text() == text and sf.changed()
    sf.save()
    assert "schema = 2" in path.read_text() and 'color = "red"' in path.read_text()


def test_missing_migration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.toml"
    path.write_text("schema = 1\n")
    monkeypatch.setattr(store, "SCHEMA_VERSION", 3)
    with pytest.raises(SessionError, match="cannot upgrade"):
        SessionFile.load(path)


def test_file_without_schema_gets_one_at_the_top_on_save(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text('# notes\nname = "bare"\n\n[[personas]]\nid = "p"\nname = "P"\n')
    sf = SessionFile.load(path)
    assert sf.changed()
    sf.save()
    assert path.read_text().startswith('# notes\nschema = 1\nname = "bare"\n')


def test_invalid_session_is_not_saved(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.personas[0].name = "  "
    sf.session.personas[1].id = "ada"
    with pytest.raises(SessionError) as err:
        sf.save()
    fields = [p.field for p in err.value.problems]
    assert fields == ["personas[1].id", "personas[0].name"]
    assert "(and 1 more problem)" in str(err.value)
    assert hand_file.read_text() == HAND_WRITTEN


def test_wrong_python_types_are_refused_before_writing(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    sf.session.personas[0].facts = "I repair clocks."  # type: ignore[assignment]
    with pytest.raises(SessionError, match=r"personas\[0\]\.facts: should be a list of text, not text"):
        sf.save()
    sf.session.personas[0].facts = []
    sf.session.personas[0].card["bad"] = {"x": [1, None]}
    with pytest.raises(
        SessionError, match=r"personas\[0\]\.card\.bad\.x\[1\]: is nothing \(None\), which TOML cannot store"
    ):
        sf.save()
    sf.session.personas[0].card["bad"] = {1, 2}
    with pytest.raises(SessionError, match=r"personas\[0\]\.card\.bad: is set, which TOML cannot store"):
        sf.save()
    assert hand_file.read_text() == HAND_WRITTEN
    del sf.session.personas[0].card["bad"]
    sf.save()
    assert SessionFile.load(hand_file).session.personas[0].facts == []


def test_file_changed_on_disk_is_not_overwritten(hand_file: Path) -> None:
    sf = SessionFile.load(hand_file)
    edited = HAND_WRITTEN.replace('name = "Bo"', 'name = "Bo, edited in vim"')
    hand_file.write_text(edited)  # a new size too, so the change shows at any clock resolution
    sf.session.name = "mine"
    with pytest.raises(SaveError, match="changed on disk"):
        sf.save()
    assert hand_file.read_text() == edited
    sf.save(force=True)
    assert 'name = "mine"' in hand_file.read_text()


def test_symlinked_session_is_written_through_the_link(hand_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.toml"
    link.symlink_to(hand_file)
    sf = SessionFile.load(link)
    sf.session.name = "via link"
    sf.save()
    assert link.is_symlink()
    assert 'name = "via link"' in hand_file.read_text()


def test_labels_saved_one_by_one_all_come_back(tmp_path: Path) -> None:
    """Labels are saved the moment they are given: many small saves in a row, each whole.
    (What a save costs is measured by bench/session.py, not here.)"""
    from sessions.demo import demo_session

    session = demo_session()
    session.annotations += [Annotation(output=f"job:{i}", annotator="sam", consistency=3) for i in range(200)]
    sf = SessionFile.create(tmp_path / "big.toml", session)
    for i in range(7):
        sf.session.annotations.append(
            Annotation(output=f"job:new{i}", annotator="sam", trait_labels={"keeps-bees": "expressed"})
        )
        assert sf.save()
        assert not sf.save()  # nothing new: not written again
    back = SessionFile.load(sf.path).session.annotations
    assert len(back) == 207 and back[-1].trait_labels == {"keeps-bees": "expressed"}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# --- the codec is generic: a new field in a model dataclass round-trips for free -------------


@dataclass
class LoraSettings:
    r: int = 16
    alpha: float = 32.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    extra: dict = field(default_factory=dict)


@dataclass
class Stage:
    id: str
    steps: int = 10
    extra: dict = field(default_factory=dict)


@dataclass
class FutureRun:
    id: str
    lora: LoraSettings = field(default_factory=LoraSettings)
    stages: list[Stage] = field(default_factory=list)
    note: str | None = None
    extra: dict = field(default_factory=dict)


def test_nested_dataclass_fields_round_trip_generically() -> None:
    run = FutureRun(id="r", lora=LoraSettings(r=8, alpha=16.0), stages=[Stage("warm", 5), Stage("main")])
    doc = tomlkit.document()
    doc.append("run", codec.new_table(codec.to_plain(run), FutureRun))
    text = doc.as_string()
    assert "[run.lora]" in text and "[[run.stages]]" in text
    problems: list = []
    back = codec.decode(FutureRun, tomlkit.parse(text).unwrap()["run"], ("run",), problems)
    assert problems == [] and back == run


def test_nested_dataclass_merge_keeps_comments_and_unknown_keys() -> None:
    text = textwrap.dedent(
        """\
        [run]
        id = "r"

        [run.lora]  # low rank
        r = 4  # small
        dropout = 0.1
        """
    )
    doc = tomlkit.parse(text)
    problems: list = []
    run = codec.decode(FutureRun, doc.unwrap()["run"], ("run",), problems)
    assert problems == [] and run.lora.r == 4 and run.lora.extra == {"dropout": 0.1}
    old = codec.to_plain(run)
    run.lora.r = 32
    run.stages.append(Stage("s1"))
    codec.merge(doc["run"], codec.to_plain(run), old, FutureRun)
    out = doc.as_string()
    assert "[run.lora]  # low rank" in out and "r = 32  # small" in out and "dropout = 0.1" in out
    assert codec.decode(FutureRun, tomlkit.parse(out).unwrap()["run"], (), []) == run


def test_nested_dataclass_wrong_type_names_the_nested_field() -> None:
    problems: list = []
    codec.decode(FutureRun, {"id": "r", "lora": {"r": "eight"}, "stages": {"id": "x"}}, ("runs", 0), problems)
    assert [(codec_keys, msg.split(";")[0]) for codec_keys, msg in problems] == [
        (("runs", 0, "lora", "r"), "should be a whole number, not text"),
        (("runs", 0, "stages"), "should be a list of tables, not a table"),
    ]


def test_run_spec_settings_round_trip(tmp_path: Path) -> None:
    run = RunSpec(id="r", datasets=[], extra={"openai": {"suffix": "odile"}})
    run.lora.r = 8
    run.training.max_steps = 20
    sf = SessionFile.create(tmp_path / "r.toml", Session(runs=[run]))
    text = sf.path.read_text()
    assert "[runs.lora]" in text and "[runs.training]" in text and "[runs.openai]" in text
    assert SessionFile.load(sf.path).session.runs[0] == run


def test_unknown_key_in_a_strict_settings_table_is_a_typo(tmp_path: Path) -> None:
    """Settings dataclasses without `extra` are strict: a misspelt key fails with a suggestion."""
    path = tmp_path / "typo.toml"
    path.write_text('schema = 1\n\n[[runs]]\nid = "r"\n\n[runs.training]\nlerning_rate = 0.001\n')
    with pytest.raises(SessionError) as err:
        SessionFile.load(path)
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (7, "runs[0].training.lerning_rate")
    assert 'did you mean "learning_rate"?' in problem.message
