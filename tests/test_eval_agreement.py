"""Wilson intervals, Cohen's kappa and Spearman's rho against hand-computed values."""

from __future__ import annotations

import pytest

from evaluators import agreement
from evaluators.evaluate.reader import read_outputs
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
    assert agreement.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / 95**0.5)
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
    outputs = read_outputs(job)
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
    rows = [
        {"kind": "expression", "trait": "tea", "label": label, "scorer": "markers"}
        for label in ("expressed", "not_shown", "expressed")
    ]
    lines = [json.dumps(rows[0]), "{not json", json.dumps(rows[1]), "[1, 2]", json.dumps(rows[2])]
    (job / "outputs.jsonl").write_text("\n".join(lines) + '\n{"kind": "expre')  # still being written
    anns = [
        Annotation(output=f"eval-y:{i}", annotator="ana", trait_labels={"tea": label})
        for i, label in ((0, "expressed"), (2, "not_shown"), (4, "not_shown"))
    ]
    report = agreement.agreement_report(anns, tmp_path)
    (tea,) = report["traits"]
    assert tea["n"] == 3  # lines 1, 3 and 5 paired with the people's labels
    assert len(report["problems"]) == 2
    assert (
        "line 2 is not valid JSON" in report["problems"][0] and "line 4 is not a JSON object" in report["problems"][1]
    )


# ----------------------------------------------------------------------------- people vs people

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1-5, some missing (None). Unit 12 has one value and cannot be paired.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
# The worked example on Wikipedia's "Krippendorff's alpha" page: three coders, fifteen units.
WIKI = [
    [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
    [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
    [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
]


def _units(matrix):
    return [[v for v in column if v is not None] for column in zip(*matrix)]


def test_krippendorff_alpha_matches_the_published_worked_examples():
    assert agreement.krippendorff_alpha(_units(K2011), "nominal") == pytest.approx(0.743, abs=5e-4)
    assert agreement.krippendorff_alpha(_units(K2011), "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert agreement.krippendorff_alpha(_units(WIKI), "nominal") == pytest.approx(0.691358, abs=1e-6)


def test_krippendorff_alpha_by_hand_on_two_coders():
    # Units (a, a), (a, b), (b, b), (b, b): coincidences o_aa 2, o_ab 1, o_ba 1, o_bb 4; n_a 3,
    # n_b 5, n 8. D_o = 2 / 8; D_e = 2 * 3 * 5 / (8 * 7). alpha = 1 - (n - 1) * 2 / 30 = 1 - 14 / 30.
    units = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    assert agreement.krippendorff_alpha(units) == pytest.approx(1 - 14 / 30)
    # Ordinal weighs a near miss less than a far one; nominal does not.
    near = [[1, 2], [3, 3], [5, 5], [1, 1]]
    far = [[1, 5], [3, 3], [2, 2], [4, 4]]
    assert agreement.krippendorff_alpha(near, "ordinal") > agreement.krippendorff_alpha(far, "ordinal")
    assert agreement.krippendorff_alpha([["x"], ["y"]]) is None  # nothing to pair
    assert agreement.krippendorff_alpha([["x", "x"], ["x", "x"]]) is None  # no variation at all
    with pytest.raises(ValueError):
        agreement.krippendorff_alpha(units, "ratio")


def test_bootstrap_interval_is_fixed_by_its_seed_and_brackets_the_estimate():
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15

    def kappa(ps):
        return agreement.cohen_kappa([a for a, _ in ps], [b for _, b in ps])

    lo, hi = agreement.bootstrap_interval(pairs, kappa)
    assert (lo, hi) == agreement.bootstrap_interval(pairs, kappa)  # the same labels, the same interval
    assert lo < 0.4 < hi and 0.1 < hi - lo < 0.8
    assert agreement.bootstrap_interval(pairs, kappa, seed=1) != (lo, hi)
    assert agreement.bootstrap_interval(pairs[:1], kappa) is None
    assert agreement.bootstrap_interval([("y", "y")] * 10, kappa) is None  # every resample undefined


def _labels(who, output, consistency=0, **traits):
    return Annotation(output=output, annotator=who, trait_labels=traits, consistency=consistency)


def test_people_agreement_alpha_and_kappa_per_trait_with_intervals():
    anns = []
    # 12 outputs labelled by both: tea agrees on 10 of 12; consistency off by one on two outputs.
    for i in range(12):
        label = "expressed" if i % 2 else "not_shown"
        other = label if i not in (3, 4) else ("not_shown" if label == "expressed" else "expressed")
        anns.append(_labels("ana", f"j:{i}", 1 + i % 5, tea=label))
        anns.append(_labels("bo", f"j:{i}", 1 + i % 5 + (1 if i in (0, 5) else 0), tea=other))
    anns.append(_labels("ana", "j:99", 3, tea="expressed"))  # one person only: not an item
    report = agreement.people_agreement(anns)
    assert report["annotators"] == ["ana", "bo"]
    (tea,) = report["traits"]
    a = ["expressed" if i % 2 else "not_shown" for i in range(12)]
    b = [x if i not in (3, 4) else ("not_shown" if x == "expressed" else "expressed") for i, x in enumerate(a)]
    assert tea["items"] == 12 and tea["kappa_items"] == 12
    assert tea["kappa"] == pytest.approx(agreement.cohen_kappa(a, b))
    assert tea["kappa"] == pytest.approx((10 / 12 - 0.5) / 0.5)  # p_e = 0.5: six of each label both
    assert tea["alpha"] == pytest.approx(agreement.krippendorff_alpha([[x, y] for x, y in zip(a, b)]))
    assert tea["alpha_ci"][0] <= tea["alpha"] <= tea["alpha_ci"][1]
    assert tea["kappa_ci"][0] <= tea["kappa"] <= tea["kappa_ci"][1]
    cons = report["consistency"]
    assert cons["items"] == 12 and 0.8 < cons["alpha"] < 1.0 and cons["alpha_ci"] is not None
    assert report["overlap"] == 12 and report["notes"] == []


def test_people_agreement_notes_too_little_overlap_and_three_annotators_get_alpha_only():
    anns = [_labels(w, "j:0", 4, tea="expressed") for w in ("ana", "bo", "cy")]
    anns += [_labels("ana", "j:1", 2, tea="not_shown"), _labels("bo", "j:1", 2, tea="not_shown")]
    report = agreement.people_agreement(anns)
    (tea,) = report["traits"]
    assert "kappa" not in tea and tea["items"] == 2  # kappa is for exactly two people
    assert tea["alpha"] == pytest.approx(1.0)
    assert "Only 2 output(s) are labelled by two or more people" in report["notes"][0]
    alone = agreement.people_agreement([_labels("ana", "j:0", 4, tea="expressed")])
    assert alone["traits"] == [] and "needs a second annotator" in alone["notes"][0]


def test_the_report_and_its_tables_carry_people_agreement_and_intervals(tmp_path):
    import json

    from rich.console import Console

    from evaluators.tables import agreement_tables

    job = tmp_path / "jobs" / "eval-z"
    job.mkdir(parents=True)
    rows = [
        {
            "kind": "expression",
            "trait": "tea",
            "label": "expressed" if i % 2 else "not_shown",
            "scorer": "markers",
            "metrics": {"bleu": float(i)},
        }
        for i in range(12)
    ]
    (job / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    anns = []
    for i in range(12):
        anns.append(_labels("ana", f"eval-z:{i}", 1 + i % 5, tea="expressed" if i % 2 else "not_shown"))
        anns.append(_labels("bo", f"eval-z:{i}", 1 + i % 5, tea="expressed" if i % 3 else "not_shown"))
    report = agreement.agreement_report(anns, tmp_path)
    (machine,) = report["traits"]
    assert machine["kappa_ci"] is not None and report["metrics"][0]["rho_ci"] is not None
    assert report["people"]["traits"][0]["items"] == 12
    console = Console(width=100, record=True)
    for table in agreement_tables(report):
        console.print(table)
    text = console.export_text()
    assert "People vs people · annotators: ana, bo" in text and "Krippendorff α" in text and "Cohen κ" in text
    assert "trait tea (nominal)" in text and "consistency 1-5 (ordinal)" in text
    assert "1.00 [1.00, 1.00]" in text  # the consistency ratings agree exactly


def test_a_drift_turns_labels_for_every_trait_pair_with_peoples(tmp_path):
    """A drift conversation's turn carries the machine's label for every trait (`trait_labels`):
    the agreement report pairs each with people's labels of that turn."""
    import json

    job = tmp_path / "jobs" / "eval-d"
    job.mkdir(parents=True)
    row = {
        "kind": "drift_turn",
        "turn": 3,
        "conversation": 1,
        "reply": "I never swim.",
        "scorer": "judge:j",
        "trait_labels": {"cannot-swim": "expressed", "keeps-bees": "not_shown"},
    }
    (job / "outputs.jsonl").write_text(json.dumps(row) + "\n")
    anns = [_labels("ana", "eval-d:0", 4, **{"cannot-swim": "expressed", "keeps-bees": "contradicted"})]
    report = agreement.agreement_report(anns, tmp_path)
    got = {t["trait"]: t for t in report["traits"]}
    assert got["cannot-swim"]["n"] == 1 and got["cannot-swim"]["confusion"][0][0] == 1
    assert got["keeps-bees"]["confusion"][1][2] == 1 and got["keeps-bees"]["scorers"] == ["judge:j"]
