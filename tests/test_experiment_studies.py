"""The persona-chat study end to end at a tiny size on CPU (a 12-conversation slice of the
Synthetic-Persona-Chat file, 2 training steps, 3 held-out turns), and the tailoring study's
parts: its plan in the session, the no-persona data, the few-shot baseline in a real tailoring
eval job, persona-inference scoring and its tables. (The whole tailoring study trains four runs,
DPO among them: too slow for the suite; `persona-tui experiment S --study tailoring --quick`
runs it.)"""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from evaluators.evaluate.job import run_eval_inline
from evaluators.evaluate.reader import load_scores
from evaluators.evaluate.spec import check_settings
from evaluators.experiments import persona_chat as pc
from evaluators.experiments import tailoring as tl
from evaluators.experiments.runner import Experiment
from evaluators.experiments.state import ExperimentState
from experiment_fixtures import SPC, TAILORING_DIR, needs_spc, needs_tailoring, tiny_session, tiny_training
from sessions.jsonl import read_jsonl
from sessions.model import EngineSpec, EvalSpec
from sessions.store import SessionFile
from supervisor import jobs

REFERENCE_KEYS = ("bleu", "rouge_l", "perplexity", "hits@1", "f1")


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=100)


@pytest.fixture(scope="module")
def spc_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("spc")
    data = root / "data"
    data.mkdir()
    with open(SPC, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:13]  # the header and 12 conversations
    with open(data / pc.CSV_NAME, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    sf = tiny_session(root)
    cfg = pc.PersonaChatStudy(size=40, steps=2, samples=3, distractors=4, max_tokens=12, data=str(data))
    exp = Experiment(sf, ExperimentState.open(sf.workspace, cfg.id, pc.STUDY, cfg.state_config()), _quiet())
    pc.add_specs(exp, cfg, cfg.csv())
    tiny_training(sf.session.run("spc-ft"))  # the study's run, made to train in seconds
    sf.save()
    result = pc.run(SessionFile.load(sf.path), cfg, console=_quiet(), foreground=True)
    return sf.path, cfg, result


@needs_spc
@pytest.mark.slow
def test_persona_chat_study_scores_three_rows_on_the_same_turns(spc_study):
    path, cfg, result = spc_study
    assert [r["model"] for r in result["rows"]] == list(pc.ROW_LABELS.values())
    for row in result["rows"]:
        assert row["n"] == 3
        for key in REFERENCE_KEYS:
            assert isinstance(row[key], float), (row["model"], key)
        assert set(row["bertscore"]) >= {"P", "R", "F1"}
    workspace = path.with_suffix("")
    own = read_jsonl(workspace / "experiments" / "spc" / "heldout-own.jsonl")
    both = read_jsonl(workspace / "experiments" / "spc" / "heldout-both.jsonl")
    key = lambda r: (r["meta"]["row"], r["meta"]["side"], r["meta"]["turn"])  # noqa: E731
    assert [key(r) for r in own] == [key(r) for r in both] and len(own) == 3
    assert (
        "other person" in json.dumps(both[0]["prompt"]).lower()
        and "other person" not in json.dumps(own[0]["prompt"]).lower()
    )
    # The fine-tuned row is the run's adapter; the prompt-only rows are the base model.
    assert result["rows"][2]["entry"] == "run:spc-ft" and result["rows"][0]["entry"] == "base"
    table = pc.result_tables(result)[0]
    out = Console(file=io.StringIO(), width=120, record=True)
    out.print(table)
    text = out.export_text()
    for column in ("BLEU", "ROUGE-L", "BERTScore F1", "Perplexity", "hits@1", "F1", "base + both personas"):
        assert column in text


@needs_spc
@pytest.mark.slow
def test_persona_chat_rerun_does_nothing(spc_study):
    path, cfg, first = spc_study
    workspace = path.with_suffix("")
    before = sorted(s.id for s in jobs.list_jobs(workspace))
    again = pc.run(SessionFile.load(path), cfg, console=_quiet(), foreground=True)
    assert again["ran"] == [] and sorted(s.id for s in jobs.list_jobs(workspace)) == before
    assert again["rows"] == first["rows"]
    spec = next(e for e in SessionFile.load(path).session.evals if e.id == "spc-own")
    assert spec.extra["experiment"]["study"] == pc.STUDY and len(spec.extra["results"]) == 1


# ----------------------------------------------------------------------------- tailoring


def _tailoring_cfg(**kw) -> tl.TailoringStudy:
    return tl.TailoringStudy(
        **{
            "size": 8,
            "steps": 2,
            "samples": 2,
            "inference": 2,
            "judge": "fallback",
            "max_tokens": 8,
            "data": str(TAILORING_DIR),
            "exp_id": "tl",
            **kw,
        }
    )


@needs_tailoring
def test_tailoring_plan_adds_four_runs_three_evaluations_and_the_inference_data(tmp_path):
    sf = tiny_session(tmp_path)
    cfg = _tailoring_cfg(judge="")
    exp = Experiment(sf, ExperimentState.open(sf.workspace, "tl", tl.STUDY, cfg.state_config()), _quiet())
    rows = tmp_path / "rows.jsonl"
    rows.write_text("")
    tl.add_specs(exp, cfg, rows)
    session = SessionFile.load(sf.path).session  # saved
    runs = {r.id: r for r in session.runs if r.id.startswith("tl-")}
    assert set(runs) == {"tl-sft-persona", "tl-sft-plain", "tl-dpo-persona", "tl-dpo-plain"}
    assert runs["tl-dpo-plain"].method == "dpo" and runs["tl-dpo-plain"].training == runs["tl-dpo-persona"].training
    sources = {d.id: d.extra.get("persona_source") for d in session.datasets if d.id.startswith("tl-")}
    assert sources == {
        "tl-sft-persona": "gold",
        "tl-sft-plain": "none",
        "tl-dpo-persona": "gold",
        "tl-dpo-plain": "none",
        "tl-inferred": "infer",
    }
    assert session.dataset("tl-inferred").engine == "bundled" and session.engine("bundled").kind == "llamacpp"
    evals = {e.id: e for e in session.evals if e.id.startswith("tl-")}
    assert set(evals) == {"tl-sft", "tl-dpo", "tl-fewshot"}
    assert evals["tl-sft"].models == ["run:tl-sft-plain", "run:tl-sft-persona"]
    assert evals["tl-sft"].extra["no_persona"] == ["run:tl-sft-plain"]
    assert evals["tl-fewshot"].extra["fewshot_models"] == ["base"]
    assert evals["tl-fewshot"].extra["judge"] == tl.BUNDLED
    assert evals["tl-dpo"].extra["criteria"] == ["personalization", "quality"]
    for spec in evals.values():
        assert check_settings(spec)[1] == [], spec.id


@needs_tailoring
def test_tailoring_data_without_personas_has_no_persona_line(tmp_path):
    sf = tiny_session(tmp_path)
    cfg = _tailoring_cfg()
    exp = Experiment(
        sf, ExperimentState.open(sf.workspace, "tl", tl.STUDY, cfg.state_config()), _quiet(), foreground=True
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text("")
    tl.add_specs(exp, cfg, rows)
    for ds in ("tl-sft-plain", "tl-sft-persona"):
        job = jobs.create_job(sf.workspace, "dataset", {"session": str(sf.path), "dataset": ds})
        assert jobs.run_job_inline(job, {"dataset": "trainers.data.job"}).state == "finished"
    plain = read_jsonl(sf.workspace / "datasets" / "tl-sft-plain.jsonl")
    persona = read_jsonl(sf.workspace / "datasets" / "tl-sft-persona.jsonl")
    assert plain and all("\nPersona:" not in r["prompt"] and r["prompt"].endswith("\nResponse:") for r in plain)
    assert persona and all("\nPersona: The user" in r["prompt"] for r in persona)


@needs_tailoring
@pytest.mark.slow
def test_the_fewshot_baseline_gets_the_worked_examples_in_a_real_tailoring_job(tmp_path):
    sf = tiny_session(tmp_path)
    sf.session.engines = [EngineSpec(id="bundled", kind="llamacpp", threads=1)]
    sf.session.evals.append(
        EvalSpec(
            id="fs",
            kind="tailoring",
            models=["bundled", tl.BUNDLED],
            extra={
                "data": str(TAILORING_DIR / tl.FILES["test"]),
                "samples": 1,
                "judge": "fallback",
                "criteria": ["personalization"],
                "max_tokens": 4,
                "fewshot": str(TAILORING_DIR / tl.FILES["fewshot"]),
                "fewshot_models": ["bundled"],
            },
        )
    )
    sf.save()
    job_dir = run_eval_inline(SessionFile.load(sf.path), "fs")
    replies = [r for r in read_jsonl(job_dir / "outputs.jsonl") if r["kind"] == "tailoring"]
    assert len(replies) == 4  # 1 row x (chosen, rejected) x 2 models
    shots = [json.loads(line) for line in (TAILORING_DIR / tl.FILES["fewshot"]).read_text().splitlines()]
    for r in replies:
        if r["model"] == "bundled":
            assert r["model_input"].startswith(
                f"Prompt: {shots[0]['prompt']}\nPersona: {shots[0]['chosen_persona_gold']}"
            )
            assert r["model_input"].count("\nResponse:") == len(shots) + 1
        else:
            assert r["model_input"].startswith(f"Prompt: {r['prompt']}\nPersona:")
    scores = load_scores(job_dir)
    tables = tl.result_tables(
        {
            "scores": {"fewshot": scores},
            "inference": {
                "pairs": 2,
                "embedding": {
                    "scorer": "MiniLM cosine similarity",
                    "all": {"k": 1, "n": 2, "rate": 0.5, "low": 0.09, "high": 0.91},
                },
            },
        }
    )
    out = Console(file=io.StringIO(), width=120, record=True)
    for t in tables:
        out.print(t)
    text = out.export_text()
    assert "few-shot prompt-only baseline" in text and "rejected" in text and "Persona inference" in text


@needs_tailoring
@pytest.mark.slow
def test_persona_inference_accuracy_by_embedding(tmp_path):
    from evaluators.fallback import shared_embedder

    rows = [json.loads(line) for line in (TAILORING_DIR / tl.FILES["inference"]).read_text().splitlines()[:2]]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    right = [
        {
            "meta": {
                "row": n,
                "persona_source": "inferred",
                "chosen_persona": r["chosen_persona_gold"],
                "rejected_persona": r["rejected_persona_gold"],
            }
        }
        for n, r in enumerate(rows, 1)
    ]
    swapped = [
        {
            "meta": {
                **r["meta"],
                "chosen_persona": r["meta"]["rejected_persona"],
                "rejected_persona": r["meta"]["chosen_persona"],
            }
        }
        for r in right
    ]
    pairs = tl.inference_pairs(right, source)
    assert len(pairs) == 4 and {p["side"] for p in pairs} == {"chosen", "rejected"}
    good = tl.inference_accuracy(pairs, shared_embedder())["embedding"]
    assert (good["all"]["k"], good["all"]["n"]) == (4, 4) and good["mean_similarity"] > 0.99
    bad = tl.inference_accuracy(tl.inference_pairs(swapped, source), shared_embedder())["embedding"]
    assert (bad["all"]["k"], bad["all"]["n"]) == (0, 4)
    assert "judge" not in good  # no judge given: no judge column, not a made-up one


@needs_tailoring
@pytest.mark.slow
def test_persona_inference_accuracy_by_a_real_judge_counts_every_pair(tmp_path):
    """The bundled model as the judge, both orders per pair: every pair ends scored or counted as
    unparseable (never dropped), per side, under the judge's name."""
    from engines import open_engine
    from evaluators.judge import Judge
    from sessions.model import EngineSpec

    rows = [json.loads(line) for line in (TAILORING_DIR / tl.FILES["inference"]).read_text().splitlines()[:2]]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    right = [
        {
            "meta": {
                "row": n,
                "persona_source": "inferred",
                "chosen_persona": r["chosen_persona_gold"],
                "rejected_persona": r["rejected_persona_gold"],
            }
        }
        for n, r in enumerate(rows, 1)
    ]
    engine = open_engine(EngineSpec(id="judge", kind="llamacpp", n_ctx=2048, threads=1))
    try:
        judge = Judge(engine, "bundled-judge", max_tokens=48, seed=1)
        out = tl.inference_accuracy(tl.inference_pairs(right, source), judge=judge)["judge"]
    finally:
        engine.close()
    assert out["scorer"] == "judge:bundled-judge"
    for side in ("chosen", "rejected"):
        assert out[side]["n"] + out[side]["unparseable"] == 2
    assert out["all"]["n"] + out["all"]["unparseable"] == 4 and 0 <= out["all"]["k"] <= out["all"]["n"]
