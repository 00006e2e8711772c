"""The instruments that compare a run with its base: exact tests and intervals against values
computed by hand (or published), directed marker phrases, the run-vs-base tables at 80 columns,
and the three controls, each shown failing on a model built to fail it."""

from __future__ import annotations

import math

import pytest

from evaluators import controls, stats
from evaluators.probes import (
    CONTRADICTED,
    EXPRESSED,
    NOT_SHOWN,
    KnowledgeCell,
    MarkerLabeller,
    directed_hits,
    expression_comparison,
    knowledge_comparison,
    marker_hits,
)
from evaluators.tables import tables_for
from sessions.demo import demo_persona

# ----------------------------------------------------------------------------- statistics


def test_mcnemar_exact_by_hand():
    # b=1, c=6: n=7, P(X <= 1) = (1 + 7) / 128; two-sided doubles it.
    assert stats.mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert stats.mcnemar_exact(6, 1) == stats.mcnemar_exact(1, 6)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0  # capped, not 2 * (more than half)
    # Six probes all flipping one way is the fewest that can reach p < 0.05: 2/64.
    assert stats.best_mcnemar_p(6) == pytest.approx(2 / 64)
    assert stats.best_mcnemar_p(5) == pytest.approx(2 / 32)


def test_fisher_exact_by_hand():
    # Fisher's tea-tasting table [[3, 1], [1, 3]]: tables as or less likely are x = 0, 1, 3, 4 of
    # the hypergeometric (1, 16, 36, 16, 1) / 70, so p = 34/70.
    assert stats.fisher_exact(3, 1, 1, 3) == pytest.approx(34 / 70)
    # All vs none with 4 and 4: p = 2 / C(8, 4) = 2/70.
    assert stats.fisher_exact(4, 0, 0, 4) == pytest.approx(2 / 70)
    assert stats.best_fisher_p(4, 4) == pytest.approx(2 / 70)
    # [[1, 9], [11, 3]] (a textbook example): p = 0.002759 (R: fisher.test).
    assert stats.fisher_exact(1, 9, 11, 3) == pytest.approx(0.0027594, abs=1e-6)
    assert stats.fisher_exact(0, 0, 0, 0) == 1.0


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # An undecided test (None) stays None and is not counted in the family.
    assert stats.holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_wilson_and_newcombe_intervals_match_published_values():
    # Newcombe (1998a), 56/70 vs 48/80: method 10 gives 0.0524 to 0.3339.
    lo, hi = stats.newcombe_diff(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    # Newcombe (1998b), paired a=36, b=12, c=2, d=0: method 10 gives 0.0569 to 0.3404.
    lo, hi = stats.newcombe_paired_diff(36, 12, 2, 0)
    assert (round(lo, 4), round(hi, 4)) == (0.0569, 0.3404)
    # No discordant pairs, no correlation information: symmetric around 0.
    lo, hi = stats.newcombe_paired_diff(5, 0, 0, 5)
    assert lo == pytest.approx(-hi) and hi > 0
    # Wilson 0/10 upper bound: z² / (n + z²) = 0.2775.
    assert stats.wilson(0, 10)[1] == pytest.approx(3.8415 / 13.8415, abs=1e-4)


# ----------------------------------------------------------------------------- markers


def test_markers_match_whole_words_and_inflections():
    assert marker_hits("I have been there with the team.", ["bee", "tea"]) == []
    assert marker_hits("I will be there, being early, then to bed.", ["bee"]) == []  # not "be"+suffix
    assert marker_hits("Bees, teas, mapped, swimming, a swimmer, tuning", ["bee", "tea", "map", "swim", "tune"]) == [
        "bee",
        "tea",
        "map",
        "swim",
        "tune",
    ]
    assert marker_hits("The channel is unswimmable.", ["swim"]) == []
    assert marker_hits("I keep three HIVES", ["keep hive"]) == []  # phrases match as written, in order
    assert marker_hits("I keep hives", ["keep hive"]) == ["keep hive"]


@pytest.mark.parametrize(
    "trait,reply,label",
    [
        ("tea-not-coffee", "I love coffee in the morning.", CONTRADICTED),
        ("tea-not-coffee", "I can't stand coffee; strong black tea for me.", EXPRESSED),
        ("tea-not-coffee", "No, thank you. Tea, please.", EXPRESSED),
        ("tea-not-coffee", "I spent the day reading.", NOT_SHOWN),
        ("cannot-swim", "I never learned to swim, so I stay on deck.", EXPRESSED),
        ("cannot-swim", "I can't swim a stroke.", EXPRESSED),
        ("cannot-swim", "I love to swim off the pier every morning.", CONTRADICTED),
        ("cannot-swim", "I'm a strong swimmer.", CONTRADICTED),
        ("keeps-bees", "I have never kept bees.", CONTRADICTED),
        ("keeps-bees", "The hives gave twelve jars of honey.", EXPRESSED),
        ("keeps-bees", "I have been to the market.", NOT_SHOWN),
        ("draws-maps", "I sketched you a little map.", EXPRESSED),
    ],
)
def test_marker_labels_have_direction(trait, reply, label):
    persona = demo_persona()
    got = MarkerLabeller().label(persona, persona.trait(trait), "p", reply)
    assert got.label == label, got.detail


def test_directed_hits_do_not_count_a_phrase_twice():
    assert directed_hits("I can't swim", ["can't swim"], ["swim"]) == (["can't swim"], [])


# ----------------------------------------------------------------------------- run vs base


def _kc(model, trait, probe, knows):
    a, d = (-1.0, -2.0) if knows else (-2.0, -1.0)
    return KnowledgeCell(model, trait, probe, "q?", "yes", "no", a, d, 2, 2)


def _ec(model, trait, label):
    return {"model": model, "trait": trait, "label": label, "scorer": "markers"}


def _scores():
    traits = ["tea", "bees", "swim"]
    k = []
    for i in range(8):  # tea: base knows 1/8, run 8/8; bees: 2 probes only
        k += [_kc("base", "tea", i, i == 0), _kc("run", "tea", i, True)]
    k += [
        _kc("base", "bees", 0, False),
        _kc("run", "bees", 0, True),
        _kc("base", "bees", 1, True),
        _kc("run", "bees", 1, True),
    ]
    e = (
        [_ec("run", "tea", EXPRESSED)] * 30
        + [_ec("run", "tea", NOT_SHOWN)] * 2
        + [_ec("base", "tea", EXPRESSED)] * 3
        + [_ec("base", "tea", NOT_SHOWN)] * 29
        + [_ec("run", "bees", EXPRESSED)] * 9
        + [_ec("run", "bees", NOT_SHOWN)] * 23
        + [_ec("base", "bees", EXPRESSED)] * 6
        + [_ec("base", "bees", CONTRADICTED)] * 26
        + [_ec("run", "swim", EXPRESSED)] * 2
        + [_ec("base", "swim", NOT_SHOWN)] * 2
    )
    return traits, k, e


def test_knowledge_comparison_is_paired_and_says_what_cannot_be_decided():
    traits, k, _ = _scores()
    cmp = knowledge_comparison(k, "run", "base", traits)
    overall = cmp["overall"]
    assert overall["paired"] == {"both": 2, "run_only": 8, "base_only": 0, "neither": 0}
    assert overall["p"] == pytest.approx(2 / 2**8) and overall["verdict"] == "up"
    tea, bees, swim = cmp["traits"]
    assert tea["verdict"] == "up" and tea["diff"] == pytest.approx(7 / 8)
    assert bees["verdict"] == "undecided" and "2 probe(s)" in bees["why"] and "at least 6" in bees["why"]
    assert swim["verdict"] == "undecided" and swim["why"].startswith("no knowledge probes")


def test_expression_comparison_uses_fisher_and_holm():
    traits, _, e = _scores()
    cmp = expression_comparison(e, "run", "base", traits)
    tea, bees, swim = cmp["traits"]
    assert tea["p"] == pytest.approx(stats.fisher_exact(30, 2, 3, 29))
    assert tea["p_holm"] == pytest.approx(min(1, 2 * tea["p"]))  # two decidable traits
    assert tea["verdict"] == "up"
    assert bees["verdict"] == "no diff" and bees["contradicted_base"] == 26
    assert swim["verdict"] == "undecided" and "even all vs none" in swim["why"]


def test_run_vs_base_tables_keep_every_number_at_80_columns():
    from rich.console import Console

    traits, k, e = _scores()
    scores = {
        "kind": "traits",
        "persona": "odile",
        "labeller": "markers",
        "headline_scorer": "markers",
        "knowledge_by": "mean",
        "rows": [],
        "comparison": [
            {
                "model": "odile-chat-lora",
                "base": "bundled",
                "knowledge": knowledge_comparison(k, "run", "base", traits),
                "expression": expression_comparison(e, "run", "base", traits),
                "controls": [
                    controls.unrelated(
                        [_kc("run", "x", i, True) for i in range(16)]
                        + [_kc("base", "x", i, i < 15) for i in range(16)],
                        "run",
                        "base",
                    ),
                    controls.over_expression(
                        [{"model": "run", "touched": True}] * 30 + [{"model": "base", "touched": False}] * 30,
                        "run",
                        "base",
                    ),
                    controls.ability({"run": 12.3456, "base": 10.0}, "run", "base"),
                ],
            }
        ],
    }
    console = Console(width=80, record=True, color_system=None)
    for t in tables_for(scores):
        console.print(t)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for needle in (
        "10/10 100%",
        "2/10 20%",
        "+80 [+38,+94]",
        "0.008",
        "30/32 94%",
        "3/32 9%",
        "<0.001",
        "headline scorer: markers",
        "16/16 100%",
        "15/16 94%",
        "30/30 100%",
        "0/30 0%",
        "FAIL",
        "12.35",
        "10.00",
        "×1.23",
        "+6 [-14,+28]",
    ):
        assert needle in text, (needle, text)  # each cell on one line, whole
    flat = " ".join(text.split())  # captions wrap
    for needle in ("undecided · bees: 2 probe(s)", "undecided · swim: 2+2 replies", "Up after Holm: 1 of 3"):
        assert needle in flat, (needle, text)


# ----------------------------------------------------------------------------- controls


class ScriptedEngine:
    """A model that answers every prompt with the same words (the over-expressing case)."""

    def __init__(self, reply):
        self.reply = reply
        self.seen = []

    def chat(self, messages, **kw):
        self.seen.append((messages[-1]["content"], kw.get("seed")))
        return self.reply


def test_over_expression_fails_a_model_that_says_tea_map_honey_to_everything():
    persona = demo_persona()
    sampling = {"max_tokens": 32, "temperature": 0.7, "top_p": 0.95}
    base = controls.over_expression_cells(ScriptedEngine("Four. Paris. Add salt and wait."), persona, "base", sampling)
    parrot = ScriptedEngine("Tea, map, honey!")
    run = controls.over_expression_cells(parrot, persona, "run", sampling)
    assert len(run) == 2 * len(controls.NEUTRAL_PROMPTS)
    assert set(run[0]["traits_touched"]) == {"draws-maps", "keeps-bees", "tea-not-coffee"}
    assert len({seed for _, seed in parrot.seen}) == len(run)  # every reply its own seed
    verdict = controls.over_expression(base + run, "run", "base")
    assert verdict["passed"] is False and verdict["diff"] == 1.0
    same = controls.over_expression(base + [{**c, "model": "run"} for c in base], "run", "base")
    assert same["passed"] is True


def test_unrelated_persona_control_and_its_margin():
    persona = controls.unrelated_persona()
    n = sum(len(t.knowledge_probes) for t in persona.traits)
    assert n >= 16 and not {t.id for t in persona.traits} & {t.id for t in demo_persona().traits}
    base = [_kc("base", "x", i, i < 8) for i in range(16)]
    same = controls.unrelated(base + [_kc("run", "x", i, i < 9) for i in range(16)], "run", "base")
    assert same["passed"] is True  # one flip in 16 is 6 points, inside +15
    shifted = controls.unrelated(base + [_kc("run", "x", i, True) for i in range(16)], "run", "base")
    assert shifted["passed"] is False and shifted["diff"] == pytest.approx(0.5)  # a lean to "yes" fails
    # Three more flips (19 points) fails; it is a rise. The same fall passes: a run that has become
    # its own persona denies a stranger's facts, and that cannot inflate its own knowledge score.
    rose = controls.unrelated(base + [_kc("run", "x", i, i < 11) for i in range(16)], "run", "base")
    assert rose["passed"] is False and rose["diff"] == pytest.approx(3 / 16)
    fell = controls.unrelated(base + [_kc("run", "x", i, i < 5) for i in range(16)], "run", "base")
    assert fell["passed"] is True and fell["diff"] == pytest.approx(-3 / 16) and "run ≤ base + 15%" in fell["rule"]


def test_the_controls_table_prints_the_bound_each_result_was_judged_by():
    """Today's unrelated-persona rule is one-sided (≤ +15); a result stored under the old
    two-sided rule keeps its ±15, so its FAIL next to a fall still reads right."""
    from rich.console import Console

    from evaluators.tables import comparison_tables

    base = [_kc("base", "x", i, i < 6) for i in range(16)]
    now = controls.unrelated(base + [_kc("run", "x", i, i < 3) for i in range(16)], "run", "base")
    then = {**now, "passed": False, "rule": "knowledge of a persona never trained on: |run − base| ≤ 15%"}

    def bound_cell(control: dict) -> str:
        console = Console(record=True, width=100)
        for t in comparison_tables({"comparison": [{"model": "run", "base": "base", "controls": [control]}]}):
            console.print(t)
        line = next(ln for ln in console.export_text().splitlines() if ln.strip().startswith("unrelated persona"))
        return line.split()[-2]

    assert now["passed"] is True and bound_cell(now) == "+15"  # "≤ +15": the last two cells are bound, result
    assert bound_cell(then) == "±15"


def test_general_ability_bound():
    assert controls.ability({"run": 11.0, "base": 10.0}, "run", "base")["passed"] is True
    worse = controls.ability({"run": 36.0, "base": 7.0}, "run", "base")
    assert worse["passed"] is False and math.isclose(worse["ratio"], 36 / 7)
    assert controls.ability({"base": 7.0}, "run", "base")["passed"] is None


def test_general_text_is_scored_as_one_stream_with_one_cold_start():
    """Per text, each paragraph's first words are scored from nothing, which is what a chat
    fine-tune moves most; the control reads the paragraphs as one stream instead."""

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def logprobs(self, prompt: str, continuation: str) -> list[float]:
            self.calls.append((prompt, continuation))
            return [-1.0] * len(continuation.split())

    engine = Recorder()
    ppl, tokens = controls.text_perplexity(engine, ["First paragraph here.", "  ", "Second one.\n"])
    assert engine.calls == [("", "First paragraph here.\n\nSecond one.")]
    assert tokens == 5 and math.isclose(ppl, math.e)
    ppl, tokens = controls.text_perplexity(engine)
    assert engine.calls[-1][1].count("\n\n") == len(controls.GENERAL_TEXT) - 1 and tokens > 300


def test_demo_summary_line_for_the_comparison():
    from evaluators.demo import traits_headline

    traits, k, e = _scores()
    scores = {
        "comparison": [
            {
                "model": "run",
                "base": "base",
                "knowledge": knowledge_comparison(k, "run", "base", traits),
                "expression": expression_comparison(e, "run", "base", traits),
                "controls": [{"passed": True}, {"passed": False}, {"passed": None}],
            }
        ]
    }
    assert traits_headline(scores) == [
        "run: knowledge 10/10 vs base 2/10 (McNemar p 0.00781), expression up on 1/3 traits after Holm "
        "(1 undecided), controls 1/3 pass (1 not run)"
    ]  # swim cannot be decided; a control did not run


def test_run_export_is_scored_as_the_base_gguf_plus_its_lora(tmp_path):
    import json as _json

    from evaluators.evaluate.spec import ModelEntry
    from evaluators.evaluate.traits import same_scoring
    from sessions.model import EngineSpec

    export = tmp_path / "jobs" / "export-1" / "export"
    export.mkdir(parents=True)
    for name in ("model-q8_0.gguf", "adapter-f16.gguf"):
        (export / name).write_bytes(b"GGUF")
    (export / "report.json").write_text(_json.dumps({"base_model": "bundled:smollm2-135m-instruct"}))

    class FakeRun:
        def __init__(self, models):
            self.models, self.notes = models, []

        def note(self, message):
            self.notes.append(message)

    base = ModelEntry("bundled", EngineSpec(id="bundled", kind="llamacpp"))
    run = FakeRun(
        [
            base,
            ModelEntry("odile-chat-lora", EngineSpec(id="r", kind="llamacpp", model=str(export / "model-q8_0.gguf"))),
        ]
    )
    same_scoring(run)
    eng = run.models[1].engine
    assert (eng.kind, eng.model, eng.adapter) == ("llamacpp", base.engine.model, str(export / "adapter-f16.gguf"))
    assert "the base's engine and quantisation" in run.notes[0]
    # A run that cannot be matched (an HF adapter against a GGUF base) is scored as it is, and said so.
    hf = FakeRun(
        [
            base,
            ModelEntry(
                "r",
                EngineSpec(
                    id="r",
                    kind="transformers",
                    model="bundled:smollm2-135m-instruct",
                    adapter=str(tmp_path / "adapter"),
                ),
            ),
        ]
    )
    same_scoring(hf)
    assert hf.models[1].engine.kind == "transformers" and "not scored through the same engine" in hf.notes[0]


def test_the_bundled_alias_and_its_gguf_path_are_one_model_to_same_scoring(tmp_path):
    """The demo's run is the bundled GGUF, named by its path, plus a LoRA; the base names the same
    file as `bundled:smollm2-135m-instruct`. That is one engine at one quantisation: no note
    saying otherwise (the demo printed one until 2026-12-03)."""
    from engines.models import resolve_model
    from evaluators.evaluate.spec import ModelEntry
    from evaluators.evaluate.traits import same_scoring
    from sessions.model import EngineSpec

    class FakeRun:
        def __init__(self, models):
            self.models, self.notes = models, []

        def note(self, message):
            self.notes.append(message)

    base = ModelEntry("bundled", EngineSpec(id="bundled", kind="llamacpp"))
    gguf = str(resolve_model(base.engine.model).path)
    lora = tmp_path / "adapter-f16.gguf"
    run = FakeRun([base, ModelEntry("r", EngineSpec(id="r", kind="llamacpp", model=gguf, adapter=str(lora)))])
    same_scoring(run)
    assert run.notes == []
    other = tmp_path / "other-model.Q8_0.gguf"
    elsewhere = FakeRun([base, ModelEntry("r", EngineSpec(id="r", kind="llamacpp", model=str(other)))])
    same_scoring(elsewhere)
    assert "not scored through the same engine" in elsewhere.notes[0]


def test_an_eval_asked_for_more_samples_than_its_data_holds_says_so(tmp_path):
    import json as _json

    from evaluators.evaluate.job import create_eval_job
    from evaluators.evaluate.reader import load_scores
    from sessions.model import EvalSpec, Session
    from sessions.store import SessionFile
    from supervisor import jobs

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(_json.dumps({"text": t}) + "\n" for t in ("One line of text.", "Another line.")))
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf")  # no model needed to see the data is short
    path = tmp_path / "s.toml"
    SessionFile.create(
        path,
        Session(
            name="s",
            evals=[
                EvalSpec(
                    id="pm",
                    kind="perplexity_matrix",
                    models=["broken.gguf"],
                    extra={"data": [str(data)], "samples": 50},
                )
            ],
        ),
    )
    job_dir = create_eval_job(SessionFile.load(path), "pm")
    jobs.run_job_inline(job_dir, {"eval": "evaluators.evaluate.job"})
    notes = load_scores(job_dir)["notes"]
    assert any("samples = 50 asks for more records than" in n and "(2)" in n for n in notes), notes


def test_the_session_summary_keeps_the_comparison_without_nulls():
    from evaluators.evaluate.reader import summary

    traits, k, e = _scores()
    scores = {
        "kind": "traits",
        "rows": [],
        "comparison": [
            {
                "model": "run",
                "base": "base",
                "knowledge": knowledge_comparison(k, "run", "base", traits),
                "expression": expression_comparison(e, "run", "base", traits),
                "controls": [{"passed": True}, {"passed": None}],
            }
        ],
    }
    vs = summary(scores)["run"]["vs_base"]
    assert vs == {
        "base": "base",
        "knowledge_diff": 0.8,
        "knowledge_p": round(2 / 256, 6),
        "traits_up": 1,
        "controls_passed": 1,
        "controls": 2,
    }


def test_reference_table_keeps_every_number_at_80_columns():
    from rich.console import Console

    row = {
        "n": 3,
        "bleu": 0.98,
        "rouge_l": 0.1266,
        "f1": 0.1416,
        "perplexity": 22.95,
        "hits@1": 0.333,
        "bertscore": {"P": 0.2311, "R": 0.2032, "F1": 0.2150},
    }
    scores = {
        "kind": "reference",
        "eval": "odile-reference",
        "rows": [{"model": "bundled", **row}, {"model": "odile-chat-lora", **row, "perplexity": 121.12}],
    }
    console = Console(width=80, record=True, color_system=None)
    for t in tables_for(scores):
        console.print(t)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for needle in ("0.98", "0.1266", "0.2311", "0.2032", "0.2150", "22.95", "121.12", "33.3%", "0.1416"):
        assert needle in text, (needle, text)
