"""Persona drift: conversations replayed from Synthetic-Persona-Chat or played by a simulated user,
probes asked on forks (never in the conversation), rates by turn, the first drop, the judge's
contradictions through a local server speaking the OpenAI chat wire format, the Annotate queue's
turn numbers, and the faults."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SPC_VALID, needs_spc
from evaluators import drift
from evaluators.annotation import build_queue
from evaluators.evaluate.job import create_eval_job
from evaluators.evaluate.reader import load_scores
from evaluators.evaluate.spec import EvalSpecError, build_job_spec
from sessions.demo import demo_session
from sessions.model import EngineSpec, EvalSpec
from sessions.store import SessionFile
from supervisor import jobs

SPC = SPC_VALID
KINDS = {"eval": "evaluators.evaluate.job"}


def _session(tmp_path: Path, *evals: EvalSpec, traits: int = 2, probes: int = 1, engines=()) -> SessionFile:
    s = demo_session()
    # One thread: a llama.cpp thread per core slows ~20x when other processes share the CPU.
    s.engines = [EngineSpec(id="bundled", kind="llamacpp", n_ctx=2048, threads=1), *engines]
    persona = s.personas[0]
    persona.traits = persona.traits[:traits]
    for t in persona.traits:
        t.knowledge_probes = t.knowledge_probes[:probes]
        t.expression_probes = t.expression_probes[:probes]
    s.evals = list(evals)
    path = tmp_path / "s.toml"
    SessionFile.create(path, s)
    return SessionFile.load(path)


@pytest.fixture(scope="module")
def spc_slice(tmp_path_factory) -> Path:
    """The header and first 12 conversations of the real SPC valid split."""
    if not SPC.is_file():
        pytest.skip(needs_spc.kwargs["reason"])
    folder = tmp_path_factory.mktemp("spc")
    with open(SPC, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:13]
    small = folder / "spc.csv"
    with open(small, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return small


# ----------------------------------------------------------------------------- pure parts


def test_probe_turns_default_to_doubling_and_always_hold_turn_one():
    assert drift.probe_turns(16) == [1, 2, 4, 8, 16]
    assert drift.probe_turns(12) == [1, 2, 4, 8, 12]
    assert drift.probe_turns(1) == [1]
    assert drift.probe_turns(16, [8, 4, 16]) == [1, 4, 8, 16]  # turn 1 is the baseline: added


def _rows(model, rates):
    return [
        {"model": model, "turn": t, "knowledge": {"rate": k}, "expression": {"rate": e}} for t, (k, e) in rates.items()
    ]


def test_first_drop_is_the_first_turn_below_the_fraction_of_turn_one():
    rows = _rows("m", {1: (0.8, 0.6), 2: (0.7, 0.31), 4: (0.39, 0.1), 8: (0.2, 0.0)})
    assert drift.first_drop(rows, "knowledge", 0.5) == 4  # 0.39 < 0.4; 0.7 is not
    assert drift.first_drop(rows, "expression", 0.5) == 4  # 0.31 is not below 0.30
    assert drift.first_drop(rows, "knowledge", 0.1) is None  # never that low
    assert drift.first_drop(_rows("m", {1: (0.0, None), 2: (0.0, 0.5)}), "knowledge", 0.5) is None
    scores = {"settings": {"drop": 0.5}, "rows": rows + _rows("n", {1: (0.5, 0.5), 4: (0.5, 0.2)})}
    assert drift.drops(scores) == {"m": {"knowledge": 4, "expression": 4}, "n": {"knowledge": None, "expression": 4}}


@needs_spc
def test_spc_scripts_replay_one_users_turns_in_order_from_the_real_file():
    from collections import Counter

    from trainers.data.formats.persona_chat import read_conversations
    from trainers.data.formats.rows import BrokenRows

    scripts = drift.spc_scripts(SPC, 1, 16, 3)
    assert len(scripts) == 3 and all(len(s.turns) == 16 for s in scripts)
    convs = {c.line: c for c in read_conversations(SPC, 0, BrokenRows(SPC), Counter())}
    for script in scripts:
        theirs = [t.text for t in convs[script.row].turns if t.speaker == 1 and t.text.strip()]
        assert script.turns == theirs[:16]  # the same words, in the same order
    assert [s.row for s in scripts] == sorted(s.row for s in scripts)  # first ones in file order


def test_a_file_without_enough_user_turns_is_one_sentence(tmp_path, spc_slice):
    with pytest.raises(drift.DriftDataError) as err:
        drift.spc_scripts(spc_slice, 1, 60, 3)
    msg = str(err.value)
    assert str(spc_slice) in msg and "no conversation with 60 turns by user 1" in msg
    assert "set turns to" in msg and msg.count(". ") == 0 and "\n" not in msg
    # The same fault when the evaluation is built: named by file, line and field; the CLI exits 2.
    spec = EvalSpec(id="d", kind="drift", models=["bundled"], extra={"data": str(spc_slice), "turns": 60})
    sf = _session(tmp_path, spec)
    with pytest.raises(EvalSpecError) as err:
        build_job_spec(sf, "d")
    assert "evals[0].data:" in str(err.value) and "no conversation with 60 turns" in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "eval", str(sf.path), "--eval", "d"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no conversation with 60 turns by user 1" in proc.stderr and f"{sf.path}:" in proc.stderr


def test_drift_settings_are_checked_before_any_model_loads(tmp_path, spc_slice):
    sf = _session(
        tmp_path,
        EvalSpec(
            id="a", kind="drift", models=["bundled"], extra={"data": str(spc_slice), "turns": 4, "probe_turns": [2, 9]}
        ),
        EvalSpec(id="b", kind="drift", models=["bundled"], extra={"data": str(spc_slice), "probe_turns": ["x"]}),
        EvalSpec(id="c", kind="drift", models=["bundled"]),
        EvalSpec(id="e", kind="drift", models=["bundled"], extra={"user": "nope"}),
        EvalSpec(id="f", kind="drift", models=["bundled+persona"], extra={"data": str(spc_slice), "turns": 2}),
    )
    problems = {}
    for eid in "abce":
        with pytest.raises(EvalSpecError) as err:
            build_job_spec(sf, eid)
        problems[eid] = " | ".join(err.value.problems)
    assert "probe_turns: turn 9 is after the last turn (4)" in problems["a"]
    assert "probe_turns: must be a list of whole numbers" in problems["b"]
    assert "data: is empty; name the Synthetic-Persona-Chat CSV" in problems["c"]
    assert "user: 'nope' is not an engine id of the session" in problems["e"]
    job = build_job_spec(sf, "f")  # +persona is a drift model too: the prompted baseline
    assert job["models"][0]["persona_prompt"] is True and job["settings"]["probe_turns"] == [1, 2]


# ----------------------------------------------------------------------------- the fork


@pytest.mark.slow
def test_a_fork_sees_the_conversation_and_never_adds_to_it():
    from engines import open_engine
    from evaluators.probes import chat_messages, knowledge_cells, render_chat

    engine = open_engine(EngineSpec(id="b", kind="llamacpp", n_ctx=2048, threads=1))
    try:
        history = [
            {"role": "system", "content": "You are Odile."},
            {"role": "user", "content": "Hi! I just moved to a harbour town."},
            {"role": "assistant", "content": "Welcome! The harbour is lovely at dawn."},
        ]
        kept = json.dumps(history)
        fork = drift.Fork(engine, history)
        prompt = fork.render_chat(chat_messages("Can you swim?", "a second system prompt"))
        assert prompt == render_chat(engine, [*history, {"role": "user", "content": "Can you swim?"}])
        assert "a second system prompt" not in prompt  # the conversation's system prompt only
        persona = demo_session().personas[0]
        persona.traits = persona.traits[:1]
        cells = knowledge_cells(fork, drift.probe_persona(persona, 1), "m")
        assert len(cells) == 1 and cells[0].tokens_affirm > 0
        fork.chat([{"role": "user", "content": "Do you keep bees?"}], max_tokens=8, seed=1)
        assert json.dumps(history) == kept  # the probe and its reply never entered the history
    finally:
        engine.close()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_drift_end_to_end_on_the_bundled_model_through_the_cli(tmp_path, spc_slice):
    spec = EvalSpec(
        id="drift",
        kind="drift",
        models=["bundled", "bundled+persona"],
        extra={
            "data": str(spc_slice),
            "turns": 3,
            "conversations": 1,
            "probe_turns": [1, 3],
            "probes": 1,
            "max_tokens": 24,
        },
    )
    sf = _session(tmp_path, spec)
    proc = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "eval", str(sf.path), "--eval", "drift"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())  # captions wrap
    assert "Persona drift" in out and "Knows (knowledge probes) by turn" in out
    assert "Shows (expression prompts) by turn" in out and "only the markers' directional" in out
    assert "bundled+persona knows" in out and "contradicts*" in out
    (job,) = jobs.list_jobs(sf.workspace)
    assert job.state == "finished" and not job.inline
    scores = load_scores(job.dir)
    assert scores["kind"] == "drift" and scores["partial"] is False and scores["probe_turns"] == [1, 3]
    assert [(r["model"], r["turn"]) for r in scores["rows"]] == [
        ("bundled", 1),
        ("bundled", 3),
        ("bundled+persona", 1),
        ("bundled+persona", 3),
    ]
    for row in scores["rows"]:
        assert row["knowledge"]["n"] == 2 and row["expression"]["n"] == 2  # 2 traits x 1 probe
        assert 0.0 <= row["knowledge"]["low"] <= row["knowledge"]["high"] <= 1.0
        assert row["contradicted_conversation"]["n"] == 2  # the turn's own reply, labelled per trait
    assert set(scores["drops"]) == {"bundled", "bundled+persona"}
    outputs = [json.loads(line) for line in (job.dir / "outputs.jsonl").read_text().splitlines()]
    script = drift.spc_scripts(spc_slice, 1, 3, 1)[0]
    persona = sf.session.personas[0]
    probe_texts = [p.question for t in persona.traits for p in t.knowledge_probes]
    probe_texts += [p for t in persona.traits for p in t.expression_probes]
    for model in ("bundled", "bundled+persona"):
        turns = [o for o in outputs if o["kind"] == "drift_turn" and o["model"] == model]
        assert [o["turn"] for o in turns] == [1, 2, 3]
        # The continuing history is exactly the user's lines and the model's own replies: the
        # probes asked on forks at turn 1 never entered it.
        for prev, nxt in zip(turns, turns[1:]):
            assert nxt["prompt"] == [
                *prev["prompt"],
                {"role": "assistant", "content": prev["reply"]},
                {"role": "user", "content": script.turns[nxt["turn"] - 1]},
            ]
        last = json.dumps(turns[-1]["prompt"])
        assert not any(json.dumps(p)[1:-1] in last for p in probe_texts)
        forks = [o for o in outputs if o.get("fork") and o["model"] == model]
        assert {o["turn"] for o in forks} == {1, 3} and {o["kind"] for o in forks} == {"knowledge", "expression"}
    assert all(o["prompt_system"] for o in outputs if o["kind"] == "drift_turn" and o["model"] == "bundled+persona")
    # The conversations land in the Annotate queue with their turn numbers; knowledge rows do not.
    queue = build_queue(sf.session, sf.workspace)
    drift_items = [i for i in queue.items if i.kind == "drift_turn"]
    assert [i.turn for i in drift_items] == [1, 2, 3, 1, 2, 3]
    assert drift_items[0].describe(blind=True)["turn"] == "1" and "model" not in drift_items[0].describe(True)
    assert drift_items[1].prompt.startswith("user: ")
    probes = [i for i in queue.items if i.kind == "expression"]
    assert probes and all(i.fork and i.turn in (1, 3) for i in probes)
    assert probes[0].describe(blind=False)["turn"].endswith("(probe on a fork)")
    # The summary went into the session file.
    again = SessionFile.load(sf.path)
    (result,) = again.session.evals[0].extra["results"]
    assert "knowledge_turn_1" in result["summary"]["bundled"]


@pytest.mark.slow
@pytest.mark.parametrize("user", ["spc", "bundled"])
def test_drift_of_two_models_at_once_gives_what_one_at_a_time_gives(tmp_path, request, monkeypatch, user):
    """On a multi-core CPU build a drift evaluation scores base and run in two lanes
    (Run.each_model): every turn, fork probe, row and drop is the same as one after another,
    with the SPC scripts or a simulated user (each model talks to a user of its own)."""
    from evaluators.evaluate import state

    extra = {"turns": 2, "conversations": 1, "probe_turns": [2], "max_tokens": 16}
    if user == "spc":  # the SPC slice only where it is used: the simulated user runs without shared/
        extra["data"] = str(request.getfixturevalue("spc_slice"))
    else:
        extra |= {"user": "bundled", "user_max_tokens": 16}
    spec = EvalSpec(id="drift", kind="drift", models=["bundled", "bundled+persona"], extra=extra)
    results, logs = {}, {}
    for lanes in (1, 2):
        monkeypatch.setattr(state, "model_lanes", lambda models, lanes=lanes: lanes)
        sf = _session(tmp_path / str(lanes), spec)
        status = jobs.run_job_inline(create_eval_job(sf, "drift"), KINDS)
        assert status.state == "finished", status.error
        assert status.done == status.total
        keep = ("model", "kind", "turn", "trait", "prompt", "reply", "label", "knows", "logp_affirm", "fork")
        outputs = [json.loads(line) for line in (status.dir / "outputs.jsonl").read_text().splitlines()]
        assert len({o["index"] for o in outputs}) == len(outputs)  # no index written twice
        scores = load_scores(status.dir)
        results[lanes] = (
            sorted(json.dumps({k: o.get(k) for k in keep}, sort_keys=True) for o in outputs),
            scores["rows"],
            scores["drops"],
        )
        logs[lanes] = (status.dir / "log.txt").read_text()
    models = [r["model"] for r in results[2][1]]
    assert models == sorted(models, key=["bundled", "bundled+persona"].index) and len(set(models)) == 2
    assert results[2] == results[1]
    assert "two models at once" in logs[2] and "two models at once" not in logs[1]


# ----------------------------------------------------------------------------- judge and simulated user


class _Chat(BaseHTTPRequestHandler):
    """The OpenAI chat wire format: GET /v1/models, POST /v1/chat/completions."""

    asked: list = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(
            {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "test"}]}
        )

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        self.asked.append(text)
        if "Label:" in text:  # the expression-label rubric
            answer = "It says the opposite.\nLabel: contradicted"
        elif "Your next message" in text:  # the simulated user's prompt
            answer = f"You: Do you like the sea? ({text.count('Them:')} replies so far)"
        else:
            answer = "Hello."
        self._send(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "scripted"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@pytest.fixture()
def chat_server():
    _Chat.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_judge_counts_contradictions_and_a_simulated_user_plays_the_other_side(tmp_path, chat_server):
    remote = EngineSpec(id="remote", kind="openai", base_url=chat_server, model="scripted")
    (tmp_path / "user.txt").write_text("Play a curious neighbour.\n{{conversation}}\nYour next message:\n")
    spec = EvalSpec(
        id="d",
        kind="drift",
        models=["bundled"],
        extra={
            "user": "remote",
            "user_prompt": "user.txt",
            "judge": "remote",
            "turns": 2,
            "conversations": 1,
            "probes": 1,
            "knowledge": False,
            "max_tokens": 16,
        },
    )
    sf = _session(tmp_path, spec, traits=1, engines=[remote])
    job_dir = create_eval_job(sf, "d")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    scores = load_scores(job_dir)
    assert scores["contradictions_by"] == "judge" and scores["labeller"] == "judge:remote"
    for row in scores["rows"]:  # every reply judged contradicted: the probe's and the turn's own
        assert row["contradicted"]["k"] == row["contradicted"]["n"] == 2
        assert row["expression"] == {**row["expression"], "k": 0, "n": 1}
    outputs = [json.loads(line) for line in (job_dir / "outputs.jsonl").read_text().splitlines()]
    turns = [o for o in outputs if o["kind"] == "drift_turn"]
    # The simulated user spoke from the edited prompt, and saw the model's replies as "Them".
    assert turns[0]["prompt"][-1]["content"] == "Do you like the sea? (0 replies so far)"
    assert turns[1]["prompt"][-1]["content"] == "Do you like the sea? (1 replies so far)"
    assert any(a.startswith("Play a curious neighbour.") for a in _Chat.asked)
    assert any(turns[0]["reply"] in a and "Label: contradicted" in a for a in _Chat.asked)
    assert turns[0]["trait_labels"] == {"draws-maps": "contradicted"}
    from rich.console import Console

    from evaluators.tables import tables_for

    console = Console(width=100, record=True)
    for table in tables_for(scores):
        console.print(table)
    text = console.export_text()
    assert "only the markers' directional" not in text and "4/4" in text  # 2 turns x (probe + own reply)


# ----------------------------------------------------------------------------- the panes


def _knows(model, trait, turn, knows):
    return {"kind": "knowledge", "model": model, "trait": trait, "turn": turn, "conversation": 1, "knows": knows}


def _shows(model, trait, turn, label):
    return {
        "kind": "expression",
        "model": model,
        "trait": trait,
        "turn": turn,
        "conversation": 1,
        "label": label,
        "scorer": "markers",
    }


def _drift_job(sf: SessionFile) -> Path:
    """A drift job through the job protocol: scores from drift.turn_rows over probe cells (the
    prompted base fades by turn 4, the run holds) and the outputs' conversation rows."""
    traits = ["draws-maps", "cannot-swim"]
    k, e, said, outputs = [], [], [], []
    for model, fade in (("bundled+persona", True), ("run:odile", False)):
        for turn in (1, 2, 4):
            for trait in traits:
                held = not fade or turn == 1 or (turn == 2 and trait == "draws-maps")
                k.append(_knows(model, trait, turn, held))
                e.append(_shows(model, trait, turn, "expressed" if held else "not_shown"))
            said.append(
                {"model": model, "turn": turn, "conversation": 1, "trait_labels": {t: "not_shown" for t in traits}}
            )
        for turn in (1, 2, 3, 4):
            outputs.append(
                {
                    "kind": "drift_turn",
                    "model": model,
                    "conversation": 1,
                    "turn": turn,
                    "prompt": [{"role": "user", "content": f"line {turn}"}],
                    "reply": f"reply {turn}",
                }
            )
    scores = {
        "eval": "drift",
        "kind": "drift",
        "models": ["bundled+persona", "run:odile"],
        "turns": 4,
        "conversations": 1,
        "user": "Synthetic-Persona-Chat user 1",
        "contradictions_by": "markers",
        "drop": 0.5,
        "settings": {"drop": 0.5},
        "partial": False,
        "problems": [],
        "notes": [],
        "rows": [],
    }
    for model in scores["models"]:
        scores["rows"] += drift.turn_rows(traits, model, k, e, [s for s in said if s["model"] == model], [1, 2, 4])
    scores["drops"] = drift.drops(scores)
    job_dir = jobs.create_job(
        sf.workspace,
        "eval",
        {
            "eval": "drift",
            "eval_kind": "drift",
            "persona": __import__("sessions.codec", fromlist=["x"]).to_plain(sf.session.personas[0]),
        },
        worker="evaluators.worker",
    )

    def work(job):
        (job.dir / "scores.json").write_text(json.dumps({**scores, "job": job.dir.name}))
        (job.dir / "outputs.jsonl").write_text(
            "".join(
                json.dumps({"index": i, "output": f"{job.dir.name}:{i}", **o}) + "\n" for i, o in enumerate(outputs)
            )
        )

    assert jobs.run_job_inline(job_dir, {"eval": work}).state == "finished"
    return job_dir


def test_turn_rows_and_the_first_drop_from_probe_cells(tmp_path):
    sf = _session(tmp_path)
    scores = json.loads((_drift_job(sf) / "scores.json").read_text())
    faded = [r for r in scores["rows"] if r["model"] == "bundled+persona"]
    assert [(r["turn"], r["knowledge"]["k"], r["knowledge"]["n"]) for r in faded] == [(1, 2, 2), (2, 1, 2), (4, 0, 2)]
    assert scores["drops"] == {
        "bundled+persona": {"knowledge": 4, "expression": 4},
        "run:odile": {"knowledge": None, "expression": None},
    }
    assert drift.summary(scores)["bundled+persona"] == {
        "knowledge_turn_1": 1.0,
        "knowledge_turn_4": 0.0,
        "knowledge_drop_turn": 4,
        "expression_turn_1": 1.0,
        "expression_turn_4": 0.0,
        "expression_drop_turn": 4,
    }


@pytest.mark.anyio
async def test_the_evaluate_pane_charts_drift_against_turn(tmp_path):
    from persona_tui.app import make_app
    from persona_tui.panes.evaluate import EvaluatePane, drift_series

    sf = _session(tmp_path)
    job_dir = _drift_job(sf)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        await pilot.pause()
        pane.show(f"job:{job_dir.name}")
        await pilot.pause()
        assert pane.query_one("#result-chart").display
        assert pane.chart_title.startswith("persona drift: rate by turn")
        series = drift_series(pane.shown_data)
        assert [s[0] for s in series] == [
            "bundled+persona knows",
            "bundled+persona shows",
            "run:odile knows",
            "run:odile shows",
        ]
        assert series[0][1:] == ([1, 2, 4], [1.0, 0.5, 0.0])
        from rich.console import Console

        console = Console(width=78, record=True, file=__import__("io").StringIO())
        console.print(pane.query_one("#result-tables").content)
        text = " ".join(console.export_text().split())
        assert "Persona drift" in text and "bundled+persona knows" in text and "t4" in text
        assert "Knows (knowledge probes) by turn" in text and "contradicts* 0% 0–49 0/4 0% 0–49 0/4 0/12" in text
        assert not [n for n in app._notifications if n.severity == "error"]


@pytest.mark.anyio
async def test_the_annotate_pane_shows_a_drift_turns_number(tmp_path, monkeypatch):
    from evaluators import annotation as core
    from persona_tui.app import make_app
    from persona_tui.panes.annotate import AnnotatePane

    monkeypatch.setenv(core.ANNOTATOR_ENV, "tester")
    sf = _session(tmp_path)
    _drift_job(sf)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        pane = app.query_one(AnnotatePane)
        meta = str(pane.query_one("#annotate-meta").content)
        assert "turn 1" in meta and "conversation 1" in meta and "model bundled+persona" in meta
        await pilot.press("right")
        await pilot.pause()
        assert "turn 2" in str(pane.query_one("#annotate-meta").content)
        pane.action_blind()
        await pilot.pause()
        meta = str(pane.query_one("#annotate-meta").content)
        assert "turn " in meta and "bundled" not in meta  # the turn is shown blind; the model is not


def test_the_evaluate_pane_starts_drift_on_an_imported_spc_dataset_only(tmp_path):
    from evaluators.evaluate.presets import new_eval_spec
    from sessions.model import DatasetSpec

    sf = _session(tmp_path)
    with pytest.raises(ValueError, match="import a persona_chat dataset in the Data tab first"):
        new_eval_spec("drift", ["bundled"], sf.session, sf.workspace, "odile")
    sf.session.datasets.append(DatasetSpec(id="spc", format="persona_chat", generator="import", source=str(SPC)))
    spec = new_eval_spec("drift", ["bundled", "bundled+persona"], sf.session, sf.workspace, "odile")
    assert spec.kind == "drift" and spec.extra["data"] == "spc" and spec.extra["persona"] == "odile"
    if SPC.is_file():  # the dataset id leads to its source: the SPC CSV
        sf.session.evals.append(spec)
        job = build_job_spec(sf, spec.id)
        assert job["settings"]["data_path"] == str(SPC.resolve()) and job["settings"]["available_conversations"] == 1
