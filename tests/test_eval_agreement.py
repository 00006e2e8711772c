"""Wilson intervals, Cohen's kappa and Spearman's rho against hand-computed values."""

from __future__ import annotations

import pytest

from evaluators import agreement
from evaluators.probes import Rate, wilson
from sessions.model import Annotation


def test_wilson_interval_values():
    lo, hi = wilson(7, 19)
    assert (round(lo, 4), round(hi, 4)) == (0.1915, 0.5896)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    assert str(Rate(7, 19)) == "37% [19%–59%] (7/19)"
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_kappa_hand_computed():
    # 50 items: both yes 20, a yes/b no 5, a no/b yes 10, both no 15.
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    # p_o = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement.cohen_kappa(["x", "y"], ["x", "y"]) == pytest.approx(1.0)
    assert agreement.cohen_kappa(["x", "x"], ["x", "x"]) is None  # undefined, not 1 or 0
    assert agreement.confusion(a, b, ["y", "n"]) == [[20, 5], [10, 15]]


def test_spearman_hand_computed_with_and_without_ties():
    # No ties: d = (-1, 1, -1, 1, 0), rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert agreement.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # Ties share average ranks: y ranks (1, 2, 3.5, 5, 3.5); rho = 8 / sqrt(10 * 9.5)
    assert agreement.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / 95 ** 0.5)
    assert agreement.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert agreement.spearman([1, 2, 3], [4, 4, 4]) is None
    assert agreement.ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]


def test_trait_agreement_pairs_machine_and_human_labels_per_trait(tmp_path):
    job = tmp_path / "eval-x"
    job.mkdir()
    rows = [
        {"kind": "expression", "trait": "tea", "label": "expressed", "scorer": "markers"},
        {"kind": "expression", "trait": "tea", "label": "not_shown", "scorer": "markers"},
        {"kind": "expression", "trait": "tea", "label": "expressed", "scorer": "markers"},
        {"kind": "expression", "trait": "bees", "label": "unparseable", "scorer": "judge:j"},
        {"kind": "reference", "metrics": {"bleu": 10.0}},
    ]
    import json

    (job / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = agreement.read_outputs(job)
    assert [o["output"] for o in outputs] == [f"eval-x:{i}" for i in range(5)]
    machine = agreement.machine_trait_labels(outputs)
    anns = [
        Annotation(output="eval-x:0", annotator="ana", trait_labels={"tea": "expressed"}, consistency=5),
        Annotation(output="eval-x:1", annotator="ana", trait_labels={"tea": "not_shown"}, consistency=2),
        Annotation(output="eval-x:2", annotator="ana", trait_labels={"tea": "not_shown"}, consistency=3),
        Annotation(output="eval-x:2", annotator="bo", trait_labels={"tea": "expressed"}, consistency=4),
        Annotation(output="eval-x:3", annotator="bo", trait_labels={"bees": "expressed"}),
    ]
    result = agreement.trait_agreement(machine, anns)
    tea = result["tea"]
    # pairs (machine, human): (e, e), (n, n), (e, n), (e, e) -> p_o = 3/4
    # machine: e 3, n 1; human: e 2, n 2 -> p_e = (3*2 + 1*2) / 16 = 0.5 -> kappa = 0.5
    assert tea.n == 4 and tea.kappa == pytest.approx(0.5) and tea.agreement == pytest.approx(0.75)
    assert tea.confusion == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert result["bees"].n == 0 and result["bees"].unscored == 1
    # Consistency is averaged over annotators: output 2 -> 3.5.
    assert agreement.consistency_ratings(anns) == {"eval-x:0": 5.0, "eval-x:1": 2.0, "eval-x:2": 3.5}
    metrics = {"expressed": {"eval-x:0": 1.0, "eval-x:1": 0.0, "eval-x:2": 1.0}}
    (m,) = agreement.metric_agreement(metrics, anns)
    # ranks: metric (2.5, 1, 2.5), human (3, 1, 2) -> rho = 1.5 / sqrt(1.5 * 2)
    assert m.n == 3 and m.rho == pytest.approx(1.5 / (1.5 * 2) ** 0.5)
    assert agreement.output_metrics(outputs) == {"bleu": {"eval-x:4": 10.0}}


def test_the_report_keeps_a_running_jobs_outputs_and_names_a_bad_line(tmp_path):
    """A running eval job's last line is half-written and a damaged line is one output: neither
    drops the job's other labels from the report."""
    import json

    job = tmp_path / "jobs" / "eval-y"
    job.mkdir(parents=True)
    rows = [{"kind": "expression", "trait": "tea", "label": label, "scorer": "markers"}
            for label in ("expressed", "not_shown", "expressed")]
    lines = [json.dumps(rows[0]), "{not json", json.dumps(rows[1]), "[1, 2]", json.dumps(rows[2])]
    (job / "outputs.jsonl").write_text("\n".join(lines) + '\n{"kind": "expre')  # still being written
    anns = [Annotation(output=f"eval-y:{i}", annotator="ana", trait_labels={"tea": label})
            for i, label in ((0, "expressed"), (2, "not_shown"), (4, "not_shown"))]
    report = agreement.agreement_report(anns, tmp_path)
    (tea,) = report["traits"]
    assert tea["n"] == 3  # lines 1, 3 and 5 paired with the people's labels
    assert len(report["problems"]) == 2
    assert "line 2 is not valid JSON" in report["problems"][0] and "line 4 is not a JSON object" in report["problems"][1]
