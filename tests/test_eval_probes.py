"""Knowledge/expression rates, flags and marker labels on constructed cells and replies (no model)."""

from __future__ import annotations

import pytest

from evaluators import probes
from evaluators.probes import KnowledgeCell, MarkerLabeller, trait_rows
from evaluators.tables import tables_for
from sessions.demo import demo_persona
from sessions.model import persona_system_prompt


def _k(trait, affirm, deny, model="m"):
    return KnowledgeCell(model, trait, 0, "q?", "yes", "no", affirm, deny, 3, 2)


def _e(trait, label, scorer="markers", model="m"):
    return {"model": model, "trait": trait, "label": label, "scorer": scorer}


def test_rates_and_the_knows_but_rarely_shows_flag():
    knowledge = [
        _k("tea", -2.0, -5.0),
        _k("tea", -1.0, -4.0),
        _k("tea", -3.0, -2.0),  # 2 of 3
        _k("bees", -9.0, -1.0),
        _k("bees", -8.0, -2.0),
    ]  # 0 of 2
    expression = (
        [_e("tea", "expressed")] * 3
        + [_e("tea", "not_shown")] * 5  # 3 of 8 = 37.5%
        + [_e("bees", "expressed")] * 4
        + [_e("bees", "not_shown")]  # 4 of 5
        + [_e("bees", "unparseable", "judge:j")]  # counted apart
        + [_e("tea", "expressed", model="other")]  # another model's cell
    )
    tea, bees, swim = trait_rows(["tea", "bees", "swim"], knowledge, expression, "m")
    assert (tea.knowledge.k, tea.knowledge.n) == (2, 3)
    assert (tea.expression.k, tea.expression.n) == (3, 8)
    assert tea.flag == probes.FLAG_KNOWS_NOT_SHOWN
    assert (bees.expression.k, bees.expression.n, bees.unscored) == (4, 5, 1)
    assert bees.flag == probes.FLAG_SHOWN_NOT_KNOWN
    assert bees.scorers == ["judge:j", "markers"]
    assert swim.flag == probes.FLAG_NO_DATA
    lo, hi = tea.expression.interval
    assert lo < 0.375 < hi


def test_knowledge_compares_total_or_mean_logprob():
    cell = KnowledgeCell("m", "t", 0, "q", "a b c d e f", "no", -6.0, -4.0, 6, 1)
    assert cell.by == "mean" and cell.knows  # the default, per token: -1.0 beats -4.0
    assert not cell.knows_total and cell.to_dict()["knows_total"] is False  # summed: -6 < -4
    cell.by = "total"
    assert not cell.knows


def test_contradictions_flag_and_rows_from_output_dicts():
    expression = [_e("tea", "contradicted", "judge:j")] * 2 + [_e("tea", "expressed", "judge:j")] * 2
    knowledge = [{"model": "m", "trait": "tea", "knows": True}]
    (row,) = trait_rows(["tea"], knowledge, expression, "m")
    assert (row.contradicted.k, row.contradicted.n) == (2, 4)
    assert row.flag == probes.FLAG_CONTRADICTS


def test_marker_labels_on_constructed_replies():
    persona = demo_persona()
    bees = persona.trait("keeps-bees")
    swim = persona.trait("cannot-swim")
    m = MarkerLabeller()
    assert m.label(persona, bees, "p", "My hives gave twelve jars of HONEY this year.").label == "expressed"
    got = m.label(persona, bees, "p", "I spent the day reading by the window.")
    assert (got.label, got.scorer) == ("not_shown", "markers")
    # Whole words with their inflections: "never a swimmer" shows the trait (a negated
    # contradicting phrase), "unswimmable" is no word of the trait's.
    assert m.label(persona, swim, "p", "I was never a swimmer.").label == "expressed"
    assert m.label(persona, swim, "p", "The channel is unswimmable.").label == "not_shown"
    bare = type(swim)(id="x", text="t")
    assert m.label(persona, bare, "p", "anything").label == probes.UNPARSEABLE


def test_traits_table_shows_the_flag_and_rates():
    from rich.console import Console

    rows = [
        r.to_dict()
        for r in trait_rows(
            ["tea"], [_k("tea", -1.0, -2.0)] * 3, [_e("tea", "expressed")] * 3 + [_e("tea", "not_shown")] * 5, "m"
        )
    ]
    scores = {"kind": "traits", "eval": "e", "persona": "odile", "rows": rows, "labeller": "markers"}
    console = Console(width=100, record=True)
    for t in tables_for(scores):
        console.print(t)
    text = console.export_text()
    assert "KNOWS, RARELY SHOWS" in text
    assert "100%" in text and "38%" in text and "3/8" in text
    # The flag is against fixed bars, not the base: the caption says which, so "below both bars"
    # beside a trait the run-against-base table finds up does not read as a contradiction.
    words = " ".join(text.split())
    assert "Flag: fixed bars, not the base (knows on ≥ 67% of probes, shows in ≥ 50% of replies)" in words
    neither = trait_rows(["tea"], [_k("tea", -2.0, -1.0)] * 3, [_e("tea", "not_shown")] * 4, "m")[0]
    assert neither.flag == probes.FLAG_NEITHER == "below both bars"


def test_persona_system_prompt_holds_the_traits():
    text = persona_system_prompt(demo_persona())
    assert text.startswith("You are Odile Marsh.")
    assert "three beehives" in text and "How you speak:" in text


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (2, 7)])
def test_rate_dict_round_trip(k, n):
    d = probes.Rate(k, n).to_dict()
    assert d["k"] == k and d["n"] == n and d["low"] <= d["rate"] <= d["high"]
