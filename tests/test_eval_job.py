"""Eval jobs end to end on the bundled model: the reference metrics on a Synthetic-Persona-Chat
slice through `persona-tui eval` (a real job subprocess), and each other kind run inline."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SPC_VALID, TAILORING_DIR, needs_spc, needs_tailoring
from evaluators.agreement import machine_trait_labels
from evaluators.evaluate.job import create_eval_job
from evaluators.evaluate.reader import load_scores, read_outputs
from sessions.demo import demo_session
from sessions.model import EngineSpec, EvalSpec
from sessions.store import SessionFile
from supervisor import jobs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SPC = SPC_VALID
TAILORING = TAILORING_DIR / "persona-tailoring_test.jsonl"
KINDS = {"eval": "evaluators.evaluate.job"}


def _engine(**kw):
    # One thread: a llama.cpp thread per core slows ~20x when other processes share the CPU.
    return EngineSpec(**{"id": "bundled", "kind": "llamacpp", "n_ctx": 2048, "threads": 1, **kw})


def _session(
    tmp_path: Path, *evals: EvalSpec, traits: int = 5, probes: int = 99, engines: list[EngineSpec] | None = None
) -> SessionFile:
    s = demo_session()
    s.engines = engines or [_engine()]
    persona = s.personas[0]
    persona.traits = persona.traits[:traits]
    for t in persona.traits:
        t.knowledge_probes = t.knowledge_probes[:probes]
        t.expression_probes = t.expression_probes[:probes]
    s.evals = list(evals)  # only the evaluations under test, not the demo's own
    path = tmp_path / "s.toml"
    SessionFile.create(path, s)
    return SessionFile.load(path)


@pytest.fixture(scope="module")
def spc_slice(tmp_path_factory) -> Path:
    """Next-turn records from the first 12 SPC conversations, built by the project's importer."""
    from trainers.data.formats.persona_chat import build_examples

    folder = tmp_path_factory.mktemp("spc")
    with open(SPC, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:13]  # the header and 12 conversations
    small = folder / "spc.csv"
    with open(small, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    records, _stats = build_examples(small, variant="own")
    out = folder / "spc.heldout.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


@needs_spc
def test_reference_eval_on_an_spc_slice_through_the_cli(tmp_path, spc_slice):
    spec = EvalSpec(
        id="spc", kind="reference", models=["bundled"], extra={"data": str(spc_slice), "samples": 5, "max_tokens": 32}
    )
    sf = _session(tmp_path, spec)
    proc = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "eval", str(sf.path), "--eval", "spc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for column in ("BLEU", "ROUGE-L", "BERTScore P", "BERTScore F1", "Perplexity", "hits@1", "F1"):
        assert column in proc.stdout
    said = " ".join(proc.stdout.split())  # the caption wraps at the terminal's width
    assert "all-MiniLM-L6-v2 layer 6" in said and "among 20 candidates" in said
    (job,) = jobs.list_jobs(sf.workspace)
    assert job.state == "finished" and not job.inline  # it ran in its own worker process
    scores = load_scores(job.dir)
    (row,) = scores["rows"]
    assert row["n"] == 5 and scores["partial"] is False
    assert 0 <= row["bleu"] <= 100 and 0 <= row["rouge_l"] <= 1 and 0 <= row["f1"] <= 1
    assert 0 < row["bertscore"]["F1"] <= 1
    assert math.isfinite(row["perplexity"]) and row["perplexity"] > 1
    assert row["hits"]["candidates"] == 20 and row["hits"]["ranked_by"] == "mean log-likelihood"
    outputs = read_outputs(job.dir)
    assert len(outputs) == 5
    for o in outputs:
        assert o["model"] == "bundled" and o["reference"] and isinstance(o["reply"], str)
        assert o["prompt"][0]["role"] == "system" and "Your persona" in o["prompt"][0]["content"]
        assert o["metrics"]["candidates"] == 20 and o["metrics"]["rank"] >= 1
    # The corpus perplexity is the token-weighted one over the outputs' own perplexities... (checked
    # through their per-output values: it lies between the smallest and the largest).
    ppl = [o["metrics"]["perplexity"] for o in outputs]
    assert min(ppl) <= row["perplexity"] <= max(ppl)
    # The summary was recorded in the session file.
    again = SessionFile.load(sf.path)
    (spc,) = [e for e in again.session.evals if e.id == "spc"]
    (result,) = spc.extra["results"]
    assert result["job"] == job.id and "bleu" in result["summary"]["bundled"]


def test_traits_eval_inline_keeps_every_reply_and_names_its_scorer(tmp_path):
    from evaluators import controls
    from evaluators.tables import tables_for

    spec = EvalSpec(
        id="tr",
        kind="traits",
        models=["bundled", "bundled+persona"],
        extra={"samples": 1, "max_tokens": 12, "controls": True, "neutral_samples": 1},
    )
    sf = _session(tmp_path, spec, traits=2, probes=2)
    job_dir = create_eval_job(sf, "tr")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    scores = load_scores(job_dir)
    assert [(r["model"], r["trait"]) for r in scores["rows"]] == [
        ("bundled", "draws-maps"),
        ("bundled", "cannot-swim"),
        ("bundled+persona", "draws-maps"),
        ("bundled+persona", "cannot-swim"),
    ]
    for r in scores["rows"]:
        assert r["knowledge"]["n"] == 2 and r["expression"]["n"] == 2 and r["scorers"] == ["markers"]
    outputs = read_outputs(job_dir)
    n_control = 16 + len(controls.NEUTRAL_PROMPTS) + 1
    assert len(outputs) == 2 * (4 + 4 + n_control)
    expr = [o for o in outputs if o["kind"] == "expression"]
    assert all(o["reply"] is not None and o["scorer"] == "markers" for o in expr)
    assert {o["prompt_system"] for o in expr} == {False, True}
    know = [o for o in outputs if o["kind"] == "knowledge"]
    per_token = [o["logp_affirm"] / o["tokens_affirm"] > o["logp_deny"] / o["tokens_deny"] for o in know]
    assert [o["knows"] for o in know] == per_token  # the default: per-token mean
    # The demo's and the control persona's answers are matched in this model's tokens.
    control = [o for o in outputs if o["kind"] == "control_knowledge"]
    assert len(control) == 2 * 16 and all(o["tokens_affirm"] == o["tokens_deny"] for o in know + control)
    assert len(machine_trait_labels(outputs)) == len(expr)
    assert status.done == status.total == 2 * (4 + 4 + n_control)
    # The second model against the first: paired knowledge, per-trait expression, three controls.
    (cmp,) = scores["comparison"]
    assert (cmp["model"], cmp["base"]) == ("bundled+persona", "bundled")
    assert cmp["knowledge"]["overall"]["n"] == 4 and cmp["knowledge"]["overall"]["verdict"] == "undecided"
    assert [r["trait"] for r in cmp["expression"]["traits"]] == ["draws-maps", "cannot-swim"]
    assert [c["control"] for c in cmp["controls"]] == ["unrelated persona", "over-expression", "general ability"]
    ability = cmp["controls"][2]
    assert ability["base_ppl"] > 1 and ability["ratio"] == pytest.approx(1.0)  # no system prompt on plain text
    assert scores["headline_scorer"] == "markers"
    assert len(tables_for(scores)) == 2 + 3


def test_two_models_scored_at_once_give_what_one_at_a_time_gives(tmp_path, monkeypatch):
    """A traits evaluation scores base and run in two lanes on a multi-core CPU build: each
    reply, probe, row and comparison is the same as scoring them one after another."""
    from evaluators.evaluate import traits

    assert traits.model_lanes([]) == 1
    spec = EvalSpec(
        id="tr",
        kind="traits",
        models=["bundled", "bundled+persona"],
        extra={"samples": 2, "max_tokens": 12, "controls": True, "neutral_samples": 1},
    )
    results = {}
    for lanes in (1, 2):
        monkeypatch.setattr(traits, "model_lanes", lambda models, lanes=lanes: lanes)
        sf = _session(tmp_path / str(lanes), spec, traits=2, probes=2)
        job_dir = create_eval_job(sf, "tr")
        status = jobs.run_job_inline(job_dir, KINDS)
        assert status.state == "finished", status.error
        assert status.done == status.total
        keep = ("model", "kind", "trait", "prompt", "reply", "label", "knows", "logp_affirm", "logp_deny", "metrics")
        outputs = sorted(
            (json.dumps({k: o.get(k) for k in keep}, sort_keys=True) for o in read_outputs(job_dir)),
        )
        assert len(set(o["index"] for o in read_outputs(job_dir))) == len(outputs)  # no index written twice
        scores = load_scores(job_dir)
        results[lanes] = (outputs, scores["rows"], scores["comparison"])
    assert results[2] == results[1]


@needs_spc
def test_reference_scores_two_models_at_once_as_one_at_a_time(tmp_path, spc_slice, monkeypatch):
    """The reference evaluation scores base and run in two lanes on a multi-core CPU build, as
    traits does: every reply, metric and row is what one model after another gives."""
    from evaluators.evaluate import reference

    spec = EvalSpec(
        id="ref",
        kind="reference",
        models=["bundled", "other"],
        extra={"data": str(spc_slice), "samples": 3, "max_tokens": 16, "distractors": 4},
    )
    results = {}
    for lanes in (1, 2):
        monkeypatch.setattr(reference, "model_lanes", lambda models, lanes=lanes: lanes)
        sf = _session(tmp_path / str(lanes), spec, engines=[_engine(), _engine(id="other", n_ctx=1024)])
        job_dir = create_eval_job(sf, "ref")
        status = jobs.run_job_inline(job_dir, KINDS)
        assert status.state == "finished", status.error
        assert status.done == status.total == 6
        outputs = sorted(
            json.dumps({k: o.get(k) for k in ("model", "record", "reply", "metrics")}, sort_keys=True)
            for o in read_outputs(job_dir)
        )
        rows = load_scores(job_dir)["rows"]
        assert [r["model"] for r in rows] == ["bundled", "other"]  # model order, whichever ends first
        assert all(r["n"] == 3 and "hits@1" in r and "perplexity" in r for r in rows)
        results[lanes] = (outputs, rows)
    assert results[2] == results[1]


def test_judge_eval_with_the_bundled_model_as_judge(tmp_path):
    spec = EvalSpec(
        id="jd",
        kind="judge",
        models=["bundled", "bundled+persona"],
        extra={"judge": "bundled", "criteria": ["persona"], "limit": 2, "max_tokens": 32, "judge_max_tokens": 48},
    )
    sf = _session(tmp_path, spec)
    job_dir = create_eval_job(sf, "jd")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    scores = load_scores(job_dir)
    (pair,) = scores["pairs"]
    assert (pair["model"], pair["baseline"], pair["criterion"]) == ("bundled+persona", "bundled", "persona")
    # Every pair is either scored or counted unparseable; nothing disappears.
    assert pair["n"] + pair["unparseable"] == 2
    stats = scores["judge_stats"]
    assert stats["calls"] == 4 + stats.get("off_format", 0)
    outputs = read_outputs(job_dir)
    assert [o["kind"] for o in outputs] == ["reply"] * 4 + ["pair"] * 2
    for o in outputs[4:]:
        assert o["label"] in ("win", "tie", "loss", "unparseable") and o["scorer"] == "judge:bundled"
        assert len(o["first"]["raw"]) in (1, 2) and len(o["second"]["raw"]) in (1, 2)


@needs_tailoring
def test_tailoring_eval_reports_chosen_and_rejected_personas_apart(tmp_path):
    data = tmp_path / "tail.jsonl"
    data.write_text("".join(TAILORING.read_text().splitlines(keepends=True)[:2]))
    spec = EvalSpec(
        id="ta",
        kind="tailoring",
        models=["bundled", "tailored"],
        extra={
            "data": str(data),
            "judge": "fallback",
            "criteria": ["personalization"],
            "no_persona": ["bundled"],
            "max_tokens": 24,
        },
    )
    sf = _session(tmp_path, spec)
    sf.session.engines.append(dataclasses.replace(_engine(), id="tailored"))
    sf.save()
    job_dir = create_eval_job(SessionFile.load(sf.path), "ta")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    scores = load_scores(job_dir)
    assert scores["groups"] == {"chosen": 2, "rejected": 2}
    groups = {p.get("group", "all"): p for p in scores["pairs"]}
    assert set(groups) == {"all", "chosen", "rejected"}
    assert groups["chosen"]["n"] == groups["rejected"]["n"] == 2 and groups["all"]["n"] == 4
    assert groups["all"]["consistency"]["rate"] == 1.0  # the fallback is order-free
    replies = [o for o in read_outputs(job_dir) if o["kind"] == "tailoring"]
    assert all("Persona:" not in o["model_input"] for o in replies if o["model"] == "bundled")
    assert all("Persona:" in o["model_input"] for o in replies if o["model"] == "tailored")


def test_perplexity_matrix_and_a_model_that_cannot_load_gives_a_partial_result(tmp_path):
    text = tmp_path / "docs.jsonl"
    text.write_text(
        "".join(
            json.dumps({"text": t}) + "\n"
            for t in ("Odile Marsh keeps three beehives on her roof.", "She drinks strong black tea.", "")
        )
    )
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Tea or coffee?"},
                    {"role": "assistant", "content": "Tea, always."},
                ]
            }
        )
        + "\n"
    )
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all")
    spec = EvalSpec(
        id="mx",
        kind="perplexity_matrix",
        models=["bundled", "broken.gguf"],
        extra={"data": ["docs.jsonl", "chat.jsonl"]},
    )
    sf = _session(tmp_path, spec)
    job_dir = create_eval_job(sf, "mx")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error
    scores = load_scores(job_dir)
    assert scores["data"] == ["docs.jsonl", "chat.jsonl"]
    ok, bad = scores["rows"]
    assert set(ok["values"]) == {"docs.jsonl", "chat.jsonl"} and all(v > 1 for v in ok["values"].values())
    assert ok["tokens"]["chat.jsonl"] >= 3
    assert bad["values"] == {}
    assert scores["partial"] is True
    assert any("1 records of" in p and "nothing to score" in p for p in scores["problems"])
    assert any("'broken.gguf' could not be opened" in p for p in scores["problems"])


def test_a_cancelled_job_keeps_partial_scores(tmp_path):
    import time

    # 20 samples per expression probe: the cancel lands long before the end, however late.
    spec = EvalSpec(id="tr", kind="traits", models=["bundled"], extra={"samples": 20, "max_tokens": 24})
    sf = _session(tmp_path, spec, traits=1, probes=2)
    job_dir = create_eval_job(sf, "tr")
    jobs.start_job(job_dir)
    deadline = time.time() + 300
    while jobs.read_status(job_dir).done < 3:
        assert time.time() < deadline, f"the job never got past 3 items: {jobs.read_status(job_dir)}"
        time.sleep(0.2)
    assert jobs.cancel_job(job_dir)
    for status, _events in jobs.watch(job_dir, interval=0.2):  # noqa: B007  (the last status is the answer)
        pass
    assert status.state == "cancelled"
    scores = load_scores(job_dir)
    assert scores["partial"] is True and any("cancelled" in p for p in scores["problems"])
    (row,) = scores["rows"]
    assert row["knowledge"]["n"] == 2 and row["expression"]["n"] < 40
    assert len(read_outputs(job_dir)) == 2 + row["expression"]["n"] + row["unscored"]
