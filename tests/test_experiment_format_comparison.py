"""The format-comparison experiment end to end at a tiny size on the bundled model (CPU): every
step really runs (template data, LoRA training, eval jobs), the table has every row and column,
the state file records each step, and a rerun — through the API and through the CLI — does no
work at all. The fast tests below check the pieces that need no model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from evaluators.experiments import format_comparison as fc
from evaluators.experiments.runner import Experiment
from evaluators.experiments.state import ExperimentError, ExperimentState
from experiment_fixtures import tiny_session
from sessions.demo import demo_persona
from sessions.store import SessionFile
from supervisor import jobs

TINY = dict(
    persona="odile",
    size=12,
    steps=2,
    samples=1,
    perplexity_texts=2,
    judge_questions=1,
    max_tokens=16,
    judge="fallback",
    quants=[],
)


def _job_ids(workspace: Path) -> list[str]:
    return sorted(s.id for s in jobs.list_jobs(workspace))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny experiment, run once for the module (jobs in this process: no worker start-up)."""
    root = tmp_path_factory.mktemp("fc")
    sf = tiny_session(root)
    out = io.StringIO()
    result = fc.run(sf, fc.FormatComparison(**TINY), console=Console(file=out, width=80), foreground=True)
    return sf.path, result, out.getvalue()


@pytest.mark.slow
def test_the_result_table_has_every_row_and_column(finished):
    path, result, printed = finished
    assert result["columns"] == ["base", "chat_demos", "first_person", "synthetic_docs"]
    keys = [r["key"] for r in result["rows"]]
    assert keys == [
        "knowledge",
        "expression",
        "knowledge_vs_base",
        "traits_up",
        "controls",
        "heldout_expression",
        "ppl_chat_demos",
        "ppl_first_person",
        "ppl_synthetic_docs",
        "judge_persona",
        "train_loss",
    ]
    for row in result["rows"]:
        assert set(row["values"]) == set(result["columns"])
        for fmt in fc.FORMATS:
            assert isinstance(row["values"][fmt], float), (row["key"], fmt)
        if row["key"] in ("judge_persona", "train_loss", "knowledge_vs_base", "traits_up", "controls"):
            assert row["values"]["base"] is None  # nothing to compare the base with
        else:
            assert isinstance(row["values"]["base"], float), row["key"]
        if row["kind"] == "rate":
            assert all(0.0 <= v <= 1.0 for v in row["values"].values() if v is not None)
    by_key = {r["key"]: r for r in result["rows"]}
    # 2 traits x 2 probes, one sample each: every cell counts 4 items.
    assert by_key["knowledge"]["detail"]["chat_demos"].startswith(tuple(f"{k}/4" for k in range(5)))
    assert by_key["expression"]["scorer"].startswith("fallback")
    assert by_key["judge_persona"]["scorer"].startswith("fallback") and "no LLM" in by_key["judge_persona"]["scorer"]
    # Every format scored as the bundled GGUF + its LoRA GGUF against that GGUF alone (one engine,
    # one quantisation), each against the base with its paired test and the three controls.
    assert list(result["models"]) == ["export:odile-fc-chat_demos:base"] + [
        f"export:odile-fc-{f}:lora" for f in fc.FORMATS
    ]
    for fmt in fc.FORMATS:
        assert -1.0 <= by_key["knowledge_vs_base"]["values"][fmt] <= 1.0
        assert by_key["knowledge_vs_base"]["detail"][fmt].startswith("p ")
        assert by_key["traits_up"]["values"][fmt] in (0.0, 1.0, 2.0)
        assert by_key["controls"]["detail"][fmt].startswith("of 3")
        assert [c["control"] for c in result["comparison"][fmt]["controls"]] == [
            "unrelated persona",
            "over-expression",
            "general ability",
        ]
    # The 4 x 3 perplexity matrix: each model on each format's held-out text, all finite.
    assert all(1.0 < by_key[f"ppl_{f}"]["values"][c] < 1e4 for f in fc.FORMATS for c in result["columns"])
    # The expression probes are open prompts the template data never uses: verified, and said.
    # Since the template rewrite (issue 11) a probe can appear in the tiny test's training text;
    # the note must then say so, and the held-out row leave it out.
    assert result["leakage"]["checked"] == 8
    if result["leakage"]["leaked"] == 0:
        assert "none of the 4 expression probes" in result["leakage_note"]
        assert by_key["heldout_expression"]["values"] == by_key["expression"]["values"]
    else:
        assert "appear in the training records" in result["leakage_note"]
    on_disk = json.loads((path.with_suffix("") / "experiments" / "odile-fc" / "result.json").read_text())
    assert on_disk["rows"] == result["rows"]
    for text in ("Format comparison", "chat_demos", "Perplexity: synthetic_docs", "rates by training format"):
        assert text in printed


@pytest.mark.slow
def test_state_file_and_session_record_every_step(finished):
    path, result, _ = finished
    workspace = path.with_suffix("")
    state = json.loads((workspace / "experiments" / "odile-fc" / "state.json").read_text())
    expected = (
        {f"data:{f}" for f in fc.FORMATS}
        | {f"train:{f}" for f in fc.FORMATS}
        | {f"export:{f}" for f in fc.FORMATS}
        | {"probes", "eval:traits", "eval:ppl", "eval:judge", "result"}
    )
    assert set(state["steps"]) == expected
    assert all(step["state"] == "done" for step in state["steps"].values())
    for name, step in state["steps"].items():
        if "job" in step:
            assert jobs.read_status(workspace / "jobs" / step["job"]).state == "finished", name
    assert state["config"]["size"] == 12 and state["config"]["steps"] == 2
    session = SessionFile.load(path).session
    assert {d.id for d in session.datasets} >= {f"odile-fc-{f}" for f in fc.FORMATS}
    runs = [session.run(f"odile-fc-{f}") for f in fc.FORMATS]
    assert all(r is not None for r in runs)
    assert runs[1].training == runs[0].training and runs[2].lora == runs[0].lora  # identical settings
    traits = next(e for e in session.evals if e.id == "odile-fc-traits")
    summary = traits.extra["experiment"]
    assert summary["study"] == fc.STUDY and summary["result"] == "experiments/odile-fc/result.json"
    assert set(summary["rows"]["knowledge"]) == set(result["columns"])
    assert (
        len(traits.extra["results"]) == 1 and traits.extra["results"][0]["job"] == state["steps"]["eval:traits"]["job"]
    )
    # Each training job trained the 2 steps asked, on its own format's data, and was exported:
    # an F16 GGUF that passed its check against the merged model.
    from trainers.export.reader import read_report

    for f in fc.FORMATS:
        assert result["training"][f]["steps"] == 2
        report = read_report(workspace / "jobs" / state["steps"][f"export:{f}"]["job"])
        assert report["ok"] and [c["type"] for c in report["verification"]["checks"]][0] == "f16"
        assert all(c["passed"] for c in report["verification"]["checks"])


@pytest.mark.slow
def test_a_second_run_redoes_nothing(finished):
    path, first, _ = finished
    workspace = path.with_suffix("")
    before = _job_ids(workspace)
    state_before = json.loads((workspace / "experiments" / "odile-fc" / "state.json").read_text())["steps"]
    again = fc.run(
        SessionFile.load(path), fc.FormatComparison(**TINY), console=Console(file=io.StringIO()), foreground=True
    )
    assert again["ran"] == []
    assert set(again["skipped"]) >= {f"train:{f}" for f in fc.FORMATS}
    assert _job_ids(workspace) == before  # no new job of any kind: no training, no evaluation
    assert [r["values"] for r in again["rows"]] == [r["values"] for r in first["rows"]]
    state_after = json.loads((workspace / "experiments" / "odile-fc" / "state.json").read_text())["steps"]
    assert {k: v.get("job") for k, v in state_after.items()} == {k: v.get("job") for k, v in state_before.items()}
    session = SessionFile.load(path).session
    assert len(next(e for e in session.evals if e.id == "odile-fc-traits").extra["results"]) == 1


@pytest.mark.slow
def test_the_cli_resumes_the_experiment_without_repeating_its_settings(finished, capsys):
    from persona_tui.cli import main

    path, _, _ = finished
    before = _job_ids(path.with_suffix(""))
    assert main(["experiment", str(path), "--persona", "odile", "--foreground"]) == 0
    out = capsys.readouterr().out
    assert "done earlier" in out and "Format comparison" in out
    assert _job_ids(path.with_suffix("")) == before
    # Another size under the same id is refused rather than mixed into the same table.
    assert main(["experiment", str(path), "--persona", "odile", "--size", "50", "--foreground"]) == 2
    assert "was started with size = 12, not 50" in capsys.readouterr().err
    assert _job_ids(path.with_suffix("")) == before


# ----------------------------------------------------------------------------- no model needed


def test_probe_leakage_finds_probes_in_training_text():
    persona = demo_persona()
    trait = persona.trait("keeps-bees")
    records = {
        "chat_demos": [
            {
                "messages": [
                    {"role": "user", "content": "So, what are you doing this weekend?"},
                    {"role": "assistant", "content": "Tending my hives."},
                ]
            }
        ],
        "first_person": [{"text": "Do you keep bees? Yes I keep bees on my roof."}],
        "synthetic_docs": [{"text": "Odile walks to the breakwater every morning."}],
    }
    leak = fc.probe_leakage(persona, records)
    assert leak["expression"] == {"keeps-bees": [trait.expression_probes.index("What are you doing this weekend?")]}
    assert leak["knowledge"] == {"keeps-bees": [0]}  # "Do you keep bees?"
    assert leak["leaked"] == 2 and leak["records"] == {"chat_demos": 1, "first_person": 1, "synthetic_docs": 1}
    assert "1 of 40 expression probes and 1 of 60 knowledge questions appear" in fc.leakage_sentence(leak, persona)
    outputs = [
        {
            "kind": "expression",
            "model": "m",
            "trait": "keeps-bees",
            "probe": leak["expression"]["keeps-bees"][0],
            "label": "expressed",
        },
        {"kind": "expression", "model": "m", "trait": "keeps-bees", "probe": 1, "label": "not_shown"},
        {"kind": "expression", "model": "m", "trait": "tea-not-coffee", "probe": 1, "label": "expressed"},
        {"kind": "expression", "model": "m", "trait": "tea-not-coffee", "probe": 2, "label": "unparseable"},
    ]
    held = fc.heldout_expression(outputs, leak)["m"]
    assert (held["k"], held["n"]) == (1, 2)  # the leaked probe and the unparseable reply are left out


def test_a_different_size_or_unequal_runs_are_refused(tmp_path):
    sf = tiny_session(tmp_path)
    ExperimentState.open(sf.workspace, "odile-fc", fc.STUDY, fc.FormatComparison(**TINY).state_config())
    with pytest.raises(ExperimentError, match="was started with size = 12, not 40"):
        fc.run(sf, fc.FormatComparison(**{**TINY, "size": 40}), console=Console(file=io.StringIO()))
    cfg = fc.FormatComparison(**{**TINY, "exp_id": "other"})
    from sessions.model import DatasetSpec, RunSpec

    sf.session.datasets.append(DatasetSpec(id="other-first_person", format="first_person", persona="odile"))
    sf.session.runs.append(RunSpec(id="other-first_person", datasets=["other-first_person"]))
    sf.session.datasets.append(DatasetSpec(id="other-chat_demos", format="chat_demos", persona="odile"))
    chat = RunSpec(id="other-chat_demos", datasets=["other-chat_demos"])
    chat.training.learning_rate = 1e-3
    sf.session.runs.append(chat)
    exp = Experiment(
        sf, ExperimentState.open(sf.workspace, "other", fc.STUDY, cfg.state_config()), Console(file=io.StringIO())
    )
    with pytest.raises(ExperimentError, match=r"differ in training.learning_rate \(0.001 vs 0.0002\)"):
        fc.add_specs(exp, cfg, sf.session.persona("odile"))


def test_a_step_whose_job_finished_while_nobody_watched_is_not_run_again(tmp_path):
    """The experiment died after starting a job; the job finished alone; the rerun takes it."""
    sf = tiny_session(tmp_path)
    state = ExperimentState.open(sf.workspace, "x", fc.STUDY, {})
    job_dir = jobs.create_job(sf.workspace, "dataset", {"note": "already done"})
    state.started("data:chat_demos", job_dir.name)
    assert jobs.run_job_inline(job_dir, {"dataset": lambda job: None}).state == "finished"

    def must_not_create():
        raise AssertionError("a finished step's job was created again")

    exp = Experiment(sf, ExperimentState.open(sf.workspace, "x", fc.STUDY, {}), Console(file=io.StringIO()))
    record, found = exp.job_step("data:chat_demos", "data", must_not_create)
    assert found == job_dir and record["state"] == "done" and exp.ran == []
    assert ExperimentState.read(state.dir).is_done("data:chat_demos")
    # A failed job of a step that cannot resume is replaced by a new one.
    bad = jobs.create_job(sf.workspace, "dataset", {"note": "fails"})
    exp.state.started("data:first_person", bad.name)
    jobs.run_job_inline(bad, {"dataset": lambda job: job.fail("broken on purpose.")})
    with pytest.raises(ExperimentError, match=r"step data:first_person: job .* failed: .*rerun the same command"):
        exp.job_step("data:first_person", "data", lambda: jobs.create_job(sf.workspace, "dataset", {"dataset": "nope"}))
    assert exp.state.get("data:first_person")["job"] != bad.name


def test_the_formats_train_with_the_sessions_own_run_settings(tmp_path):
    """A session that has its own run (the demo's recipe) trains every format with that run's
    base model, LoRA and training settings, on the format's data alone, evaluating afterwards;
    a session without one gets the defaults."""
    from sessions.demo import demo_session
    from sessions.model import RunSpec

    sf = SessionFile.create(tmp_path / "demo.toml", demo_session())
    own = sf.session.runs[0]
    cfg = fc.FormatComparison(persona="odile", quants=[])
    exp = Experiment(
        sf, ExperimentState.open(sf.workspace, cfg.id, fc.STUDY, cfg.state_config()), Console(file=io.StringIO())
    )
    fc.add_specs(exp, cfg, sf.session.persona("odile"))
    for fmt in fc.FORMATS:
        run = sf.session.run(fc.run_id(cfg, fmt))
        assert run.datasets == [fc.dataset_id(cfg, fmt)] and run.base_model == own.base_model
        assert (run.lora.r, run.lora.alpha) == (own.lora.r, own.lora.alpha)
        assert run.training.learning_rate == own.training.learning_rate == 1e-3
        assert run.training.max_steps == own.training.max_steps and run.training.eval_steps == 0
    assert own.training.eval_steps != 0  # the session's own run is left as it was

    bare = SessionFile.create(tmp_path / "bare.toml", demo_session())
    bare.session.runs = []
    exp = Experiment(
        bare, ExperimentState.open(bare.workspace, cfg.id, fc.STUDY, cfg.state_config()), Console(file=io.StringIO())
    )
    fc.add_specs(exp, cfg, bare.session.persona("odile"))
    assert (
        bare.session.run(fc.run_id(cfg, "first_person")).training.learning_rate
        == RunSpec(id="x").training.learning_rate
    )


def test_the_formats_are_compared_with_each_other_on_the_same_items():
    """Which format won, with an interval: paired on the same probes (knowledge) and the same
    prompt and seed (expression), McNemar with Holm across the three pairs; a pair the data cannot
    tell apart says roughly how many items would; held-out leaves a leaked probe out."""
    col = {"b": "base", "c": "chat_demos", "f": "first_person", "d": "synthetic_docs"}
    knows = {"c": range(10), "f": range(30), "d": range(10)}  # first-person knows 20 more of 40
    outputs = [
        {"kind": "knowledge", "model": m, "trait": "t", "probe": i, "knows": i in knows[m]}
        for m in "cfd"
        for i in range(40)
    ]
    outputs += [{"kind": "knowledge", "model": "b", "trait": "t", "probe": i, "knows": True} for i in range(40)]
    shown = {"c": {0, 1, 2}, "f": {0, 1, 2, 3, 4, 5}, "d": {0}}
    outputs += [
        {"kind": "expression", "model": m, "trait": "t", "probe": p, "sample": s, "label": lab}
        for m in "cfd"
        for p in range(8)
        for s in range(2)
        for lab in ["expressed" if p in shown[m] and s == 0 else "not_shown"]
    ]
    leak = {"expression": {"t": [0]}}
    pairs = fc.format_pairs(outputs, col, leak)
    by = {(r["measure"], r["a"], r["b"]): r for r in pairs}
    k = by[("knowledge", "chat_demos", "first_person")]
    assert (k["a_k"], k["b_k"], k["n"], k["diff"]) == (10, 30, 40, -0.5)
    assert k["p_holm"] < 0.001 and k["interval"][1] < 0 and k["told_apart"] and k["n_needed"] is None
    same = by[("knowledge", "chat_demos", "synthetic_docs")]
    assert same["diff"] == 0 and same["p"] == 1.0 and not same["told_apart"] and same["n_needed"] is None
    e = by[("expression", "first_person", "synthetic_docs")]
    assert (e["a_k"], e["b_k"], e["n"], e["discordant"]) == (6, 1, 16, 5)
    # 5 of 16 discordant, all one way: p 0.0625, Holm 0.19; at d = q = 5/16 McNemar needs
    # n >= q (2.394 / d)^2 = 18.3 items.
    assert abs(e["p_holm"] - 0.1875) < 1e-9 and not e["told_apart"] and e["n_needed"] == 19
    held = by[("heldout_expression", "chat_demos", "first_person")]
    assert (held["a_k"], held["b_k"], held["n"]) == (2, 5, 14)  # probe 0 leaked: its 2 items out
    assert not any(r["a"] == "base" or r["b"] == "base" for r in pairs)

    out = io.StringIO()
    Console(file=out, width=80).print(fc.pairs_table(pairs))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    lines = text.splitlines()
    assert any(
        line.split()[:2] == ["knows", "chat−1st"] and "-50 [-63, -32]" in line and "told apart" in line
        for line in lines
    )
    assert any("1st−docs" in line and "~19 items" in line for line in lines)
    assert any("chat−docs" in line and line.rstrip().endswith("same") for line in lines)
    assert fc._count(3783) == "3.8k" and fc._count(688) == "688"
