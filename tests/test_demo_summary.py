"""An honest summary: loss as smoothed windows and eval loss, charts with a smoothed line over the
raw points, every printed number recomputable from the file named with it, and tables that never
cut a number short at 80 columns."""

from __future__ import annotations

import io
import re
from collections import Counter

import pytest
from demo_numbers import check_loss
from rich.console import Console

from evaluators import controls
from evaluators.demo import made_table, train_claim
from evaluators.probes import (
    CONTRADICTED,
    EXPRESSED,
    NOT_SHOWN,
    KnowledgeCell,
    expression_comparison,
    knowledge_comparison,
    trait_rows,
)
from evaluators.tables import agreement_tables, tables_for
from supervisor import jobs
from trainers.train.loss_curve import (
    loss_chart_text,
    loss_points,
    loss_summary,
    smooth,
    summary_of_events,
    summary_window,
)

# ----------------------------------------------------------------------------- the loss summary


def test_windows_are_a_tenth_of_the_steps_at_least_five_never_more_than_half():
    assert [summary_window(n) for n in (0, 1, 2, 3, 9, 10, 11, 49, 50, 51, 60, 200)] == [
        0,
        1,
        1,
        1,
        4,
        5,
        5,
        5,
        5,
        6,
        6,
        20,
    ]


def test_noisy_end_steps_do_not_decide_the_summary():
    """The issue's case: single first and last steps say the loss rose; the windows say it fell."""
    losses = [2.89] + [3.4 - 0.01 * i for i in range(1, 59)] + [2.94]
    train = list(zip(range(1, 61), losses))
    s = loss_summary(train, [(10, 3.08), (60, 2.65)])
    assert losses[0] < losses[-1]  # what the old summary printed: 2.89 -> 2.94
    assert s.window == 6 and s.first_steps == (1, 6) and s.last_steps == (55, 60)
    assert s.first == pytest.approx(sum(losses[:6]) / 6) and s.last == pytest.approx(sum(losses[-6:]) / 6)
    assert s.first > s.last
    assert s.text() == (
        f"loss {sum(losses[:6]) / 6:.2f} -> {sum(losses[-6:]) / 6:.2f} (mean of the first/last 6 of "
        "60 logged steps), eval loss 3.08 -> 2.65 (steps 10 -> 60)"
    )


def test_summary_of_few_steps_and_of_none():
    assert loss_summary([]).text() == "no loss logged"
    assert loss_summary([(1, 3.0)]).text() == "loss 3.00 (one logged step)"
    three = loss_summary([(1, 3.0), (2, 2.5), (3, 2.1)], [(3, 2.4)])
    assert three.text() == "loss 3.00 -> 2.10 (mean of the first/last 1 of 3 logged steps), eval loss 2.40 (step 3)"


def test_a_resumed_run_keeps_the_steps_it_finally_took():
    events = [
        {"event": "train_begin"},
        *({"event": "step", "step": s, "loss": 9.0} for s in (1, 2, 3, 4)),
        {"event": "eval", "step": 4, "eval_loss": 9.0},
        {"event": "train_begin", "resumed_from": 2},
        *({"event": "step", "step": s, "loss": 1.0 * s} for s in (3, 4, 5)),
        {"event": "step", "step": 6, "loss": float("nan")},
        {"event": "eval", "step": 5, "eval_loss": 4.5},
    ]
    train, evals = loss_points(events)
    assert train == [(1, 9.0), (2, 9.0), (3, 3.0), (4, 4.0), (5, 5.0)] and evals == [(5, 4.5)]
    assert summary_of_events(events).last == pytest.approx(4.5)  # window 2: steps 4 and 5


def test_smoothing_is_a_centred_mean_that_keeps_the_ends():
    assert smooth([1.0, 2.0, 3.0, 4.0, 5.0], 3) == [1.5, 2.0, 3.0, 4.0, 4.5]
    assert smooth([1.0, 5.0, 1.0], 1) == [1.0, 5.0, 1.0]
    noisy = [3.0 + (0.5 if i % 2 else -0.5) for i in range(40)]
    inner = smooth(noisy, 5)[2:-2]  # a swing of 1.0 becomes one of 0.2
    assert max(inner) - min(inner) == pytest.approx(0.2) and max(noisy) - min(noisy) == pytest.approx(1.0)


def test_the_text_chart_draws_raw_points_under_a_smoothed_line():
    train = [(i, 3.0 + (0.4 if i % 2 else -0.4) - 0.01 * i) for i in range(1, 61)]
    chart = loss_chart_text(train, [(30, 3.1), (60, 2.6)], width=78, title="r1: loss")
    assert "r1: loss" in chart and "7-step mean" in chart and "eval" in chart
    assert "·" in chart and "x" in chart  # raw dots, eval crosses
    assert max(len(line) for line in chart.splitlines()) <= 78
    raw = loss_chart_text(train, smoothed=False)
    assert "step mean" not in raw and "·" not in raw
    assert loss_chart_text([]) == ""


# ----------------------------------------------------------------------------- the demo's lines and their files


def _training(job, losses, evals):
    """A job written through the protocol's worker side, as the training worker writes one."""
    job.event(event="train_begin", run="r1", resumed_from=None)
    for step, loss in enumerate(losses, 1):
        job.event(event="step", step=step, max_steps=len(losses), loss=loss, tokens_per_s=311.4)
    for step, loss in evals:
        job.event(event="eval", step=step, eval_loss=loss)
    job.event(event="train_end", state="finished", step=len(losses), tokens_per_s=287.6)


def test_the_demo_train_line_is_recomputed_from_the_events_file_it_names(tmp_path):
    losses = [3.5 - 0.02 * i + (0.3 if i % 3 == 0 else 0.0) for i in range(60)]
    job_dir = jobs.create_job(tmp_path, "train", {"run": {"id": "r1"}}, job_id="train-r1-demo")
    assert (
        jobs.run_job_inline(job_dir, {"train": lambda job: _training(job, losses, [(20, 3.2), (60, 2.7)])}).state
        == "finished"
    )
    claim, source = train_claim("r1", job_dir)
    assert source == str(job_dir / "events.jsonl")
    assert claim.startswith("r1: 60 steps, loss ") and claim.endswith(", 288 tok/s")
    check_loss(claim, job_dir / "events.jsonl")
    # The check can fail: a claim made from other numbers is caught.
    with pytest.raises(AssertionError):
        check_loss(claim.replace("of 60 logged", "of 61 logged"), job_dir / "events.jsonl")
    with pytest.raises(AssertionError):
        first = re.search(r"loss (\d+\.\d+)", claim)[1]
        check_loss(claim.replace(f"loss {first}", f"loss {float(first) + 0.01:.2f}", 1), job_dir / "events.jsonl")


# ----------------------------------------------------------------------------- tables at 80 columns

NUMBER = re.compile(r"^[\[(]?[-+×≤<>±]*\d[\d.,/%–:+\-\])×]*$")
LONG = "odile-chat-lora-r16-bf16"  # a realistic, long model label


def _numbers(text: str) -> list[str]:
    return [t for t in text.split() if NUMBER.match(t)]


def _cell_texts(table) -> list[str]:
    out = [str(table.title or ""), str(table.caption or "")]
    for col in table.columns:
        out.append(str(col.header))
        out += [c.plain if hasattr(c, "plain") else str(c) for c in col._cells]
    return out


def assert_numbers_whole(tables, width: int = 80) -> str:
    """Render at `width` as a log would (no colour) and find every number of every cell whole."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width, text
    shown = Counter(_numbers(text))
    wanted = Counter(number for table in tables for cell in _cell_texts(table) for number in _numbers(cell))
    cut = {number: (n, shown[number]) for number, n in wanted.items() if shown[number] < n}
    assert not cut, (cut, text)  # each number as often, and whole, as the cells hold it
    assert "…" not in text, text
    return text


def _kc(model, trait, probe, knows):
    a, d = (-1.0, -2.0) if knows else (-2.0, -1.0)
    return KnowledgeCell(model, trait, probe, "q?", "yes", "no", a, d, 2, 2)


def _traits_scores():
    traits = ["drinks-tea-not-coffee", "keeps-bees", "cannot-swim", "draws-maps", "sings-in-a-choir"]
    k, e = [], []
    for t in traits:
        for i in range(120):
            k += [_kc("bundled", t, i, i % 7 == 0), _kc(LONG, t, i, i % 2 == 0)]
        e += (
            [{"model": LONG, "trait": t, "label": EXPRESSED, "scorer": "markers"}] * 101
            + [{"model": LONG, "trait": t, "label": NOT_SHOWN, "scorer": "markers"}] * 19
            + [{"model": "bundled", "trait": t, "label": CONTRADICTED, "scorer": "markers"}] * 17
            + [{"model": "bundled", "trait": t, "label": NOT_SHOWN, "scorer": "markers"}] * 103
        )
    rows = [r.to_dict() for m in ("bundled", LONG) for r in trait_rows(traits, k, e, m)]
    neutral = [{"model": LONG, "touched": i < 37} for i in range(120)] + [
        {"model": "bundled", "touched": i < 3} for i in range(120)
    ]
    return {
        "kind": "traits",
        "persona": "odile",
        "labeller": "markers",
        "headline_scorer": "markers",
        "knowledge_by": "mean",
        "rows": rows,
        "comparison": [
            {
                "model": LONG,
                "base": "bundled",
                "knowledge": knowledge_comparison(k, LONG, "bundled", traits),
                "expression": expression_comparison(e, LONG, "bundled", traits),
                "controls": [
                    controls.unrelated(k, LONG, "bundled"),
                    controls.over_expression(neutral, LONG, "bundled"),
                    controls.ability({LONG: 1234.5678, "bundled": 987.6543}, LONG, "bundled"),
                ],
            }
        ],
    }


SCORES = {
    "traits": _traits_scores,
    "reference": lambda: {
        "kind": "reference",
        "eval": "odile-reference",
        "rows": [
            {
                "model": m,
                "n": 1200,
                "bleu": 12.3456,
                "rouge_l": 0.12345,
                "f1": 0.14159,
                "perplexity": 12345.678,
                "hits@1": 0.33333,
                "bertscore": {"P": 0.23111, "R": 0.20322, "F1": 0.21503},
                "bertscore_model": "all-MiniLM-L6-v2",
                "hits": {"candidates": 20, "ranked_by": "log-prob"},
            }
            for m in ("bundled", LONG)
        ],
    },
    "judge": lambda: {
        "kind": "judge",
        "judge": "teacher-1",
        "eval": "odile-judge",
        "pairs": [
            {
                "model": LONG,
                "baseline": "bundled",
                "criterion": "persona consistency",
                "n": 1200,
                "unparseable": 12,
                "win": {"k": 1003, "n": 1200, "rate": 0.8358, "low": 0.8138, "high": 0.8557},
                "tie": {"k": 97, "n": 1200, "rate": 0.0808, "low": 0.0667, "high": 0.0976},
                "loss": {"k": 88, "n": 1200, "rate": 0.0733, "low": 0.0598, "high": 0.0896},
                "consistency": {"k": 1100, "n": 1200, "rate": 0.9167},
            }
        ],
    },
    "tailoring": lambda: {
        "kind": "tailoring",
        "judge": "teacher-1",
        "eval": "odile-tailoring",
        "pairs": [
            {
                "model": LONG,
                "baseline": "bundled",
                "criterion": "tailoring",
                "group": "rejected",
                "n": 640,
                "unparseable": 3,
                "win": {"k": 401, "n": 640, "rate": 0.6266, "low": 0.5884, "high": 0.6633},
                "tie": {"k": 100, "n": 640, "rate": 0.1563, "low": 0.1303, "high": 0.1861},
                "loss": {"k": 136, "n": 640, "rate": 0.2125, "low": 0.1826, "high": 0.2458},
                "consistency": {"k": 600, "n": 640, "rate": 0.9375},
            }
        ],
    },
    "perplexity_matrix": lambda: {
        "kind": "perplexity_matrix",
        "eval": "odile-matrix",
        "data": ["chat_demos", "first_person", "synthetic_docs"],
        "rows": [
            {
                "model": m,
                "values": {"chat_demos": 12.3456 * f, "first_person": 234.5678 * f, "synthetic_docs": 3456.789 * f},
            }
            for m, f in (("bundled", 1.0), (f"{LONG}-chat", 0.5), (f"{LONG}-docs", 0.25))
        ],
    },
    "drift": lambda: {
        "kind": "drift",
        "eval": "odile-drift",
        "turns": 16,
        "conversations": 12,
        "user": "spc",
        "drop": 0.5,
        "rows": [
            {
                "model": m,
                "turn": t,
                "knowledge": {"k": 100 - t, "n": 120, "rate": (100 - t) / 120, "low": 0.61, "high": 0.89},
                "expression": {"k": 90 - t, "n": 120, "rate": (90 - t) / 120, "low": 0.55, "high": 0.8},
                "contradicted": {"k": 3, "n": 120, "rate": 0.025, "low": 0.01, "high": 0.07},
            }
            for m in ("bundled", LONG)
            for t in (1, 2, 4, 8, 16)
        ],
    },
}


@pytest.mark.parametrize("kind", sorted(SCORES))
def test_every_eval_table_keeps_every_number_whole_at_80_columns(kind):
    tables = tables_for(SCORES[kind]())
    assert tables
    assert_numbers_whole(tables)


def test_agreement_tables_keep_every_number_whole_at_80_columns():
    ci = [0.12345, 0.80123]
    report = {
        "labels": ["expressed", "not_shown", "contradicted"],
        "annotators": ["ann", "bob"],
        "rated": 1234,
        "traits": [
            {
                "trait": "drinks-tea-not-coffee",
                "n": 1200,
                "kappa": 0.61234,
                "kappa_ci": ci,
                "agreement": 0.8765,
                "confusion": [[500, 12, 3], [40, 600, 5], [1, 2, 37]],
                "scorers": ["markers", "judge"],
            }
        ],
        "metrics": [{"metric": "BERTScore F1", "n": 1234, "rho": -0.1234, "rho_ci": [-0.25, 0.01]}],
        "people": {
            "annotators": ["ann", "bob"],
            "bootstrap": {"reps": 2000, "seed": 7},
            "traits": [
                {"trait": "keeps-bees", "items": 321, "alpha": 0.7123, "alpha_ci": ci, "kappa": 0.7012, "kappa_ci": ci}
            ],
            "consistency": {"items": 321, "alpha": 0.5555, "alpha_ci": ci, "kappa": 0.5, "kappa_ci": ci},
        },
    }
    assert_numbers_whole(agreement_tables(report))


def test_the_demo_made_table_keeps_every_number_whole_at_80_columns(tmp_path):
    long = (
        tmp_path
        / "a-rather-long-folder-name"
        / "persona-demo"
        / "demo"
        / "jobs"
        / "train-odile-chat-lora-20261203-071500-abcd"
    )
    made = [
        ("session", "persona 'Odile Marsh', 5 traits", str(tmp_path / "persona-demo" / "demo.toml")),
        (
            "data",
            "chat_demos: 1350 train + 150 held-out examples (job dataset-20261203-071200-beef)",
            str(tmp_path / "persona-demo" / "demo" / "datasets" / "odile-chat.jsonl") + " (+ .heldout.jsonl)",
        ),
        (
            "train",
            (
                "odile-chat-lora: 120 steps, loss 3.36 -> 2.77 (mean of the first/last 12 of 120 logged steps), "
                "eval loss 3.08 -> 2.65 (steps 20 -> 120), 311 tok/s"
            ),
            str(long / "events.jsonl"),
        ),
        (
            "evaluate",
            (
                f"traits: bundled, {LONG}; {LONG}: knowledge 31/64 vs base 12/64 (McNemar p 0.000123), "
                "expression up on 3/5 traits after Holm, controls 3/3 pass"
            ),
            str(long / "outputs.jsonl"),
        ),
    ]
    text = assert_numbers_whole([made_table(made, 587.4)])
    assert "What the demo made (587 s)" in text


def test_the_format_comparisons_loss_row_uses_the_same_windows(tmp_path):
    from evaluators.experiments.format_comparison import _train_summary

    losses = [3.0 + (0.5 if i % 2 else -0.5) - 0.01 * i for i in range(40)]
    job_dir = jobs.create_job(tmp_path, "train", {"run": {"id": "r1"}}, job_id="train-r1-fc")
    assert jobs.run_job_inline(job_dir, {"train": lambda job: _training(job, losses, [])}).state == "finished"
    got = _train_summary(job_dir)
    assert got["loss_window"] == 5 and got["steps"] == 40
    assert got["first_loss"] == pytest.approx(sum(losses[:5]) / 5)
    assert got["last_loss"] == pytest.approx(sum(losses[-5:]) / 5)


def test_the_demo_headline_is_recomputed_from_the_outputs_file_it_names(tmp_path):
    """traits_headline (what the demo prints) against check_headline (the per-probe rows of
    outputs.jsonl and the frozen spec), on rows made by the real cells and comparisons."""
    import json

    from demo_numbers import check_headline

    from evaluators.demo import traits_headline

    traits = ["tea", "bees", "swim"]
    k = [
        _kc(m, t, i, (i % 3 == 0) if m == "bundled" else (i % 2 == 0))
        for t in traits
        for i in range(12)
        for m in ("bundled", "run:r1")
    ]
    e = [
        {
            "kind": "expression",
            "model": m,
            "trait": t,
            "label": EXPRESSED if (i < 9 if m == "run:r1" else i < 1) else NOT_SHOWN,
            "scorer": "markers",
        }
        for t in traits
        for i in range(12)
        for m in ("bundled", "run:r1")
    ]
    ctrl_k = [
        {**_kc(m, "x", i, i < 6).to_dict(), "kind": "control_knowledge"}
        for i in range(16)
        for m in ("bundled", "run:r1")
    ]
    neutral = [
        {"kind": "control_neutral", "model": m, "touched": m == "run:r1" and i < 8}
        for i in range(16)
        for m in ("bundled", "run:r1")
    ]
    ppl = [
        {"kind": "control_perplexity", "model": m, "metrics": {"perplexity": p}}
        for m, p in (("bundled", 10.0), ("run:r1", 11.0))
    ]
    cmp = {
        "model": "run:r1",
        "base": "bundled",
        "knowledge": knowledge_comparison(k, "run:r1", "bundled", traits),
        "expression": expression_comparison(e, "run:r1", "bundled", traits),
        "controls": [
            controls.unrelated(ctrl_k, "run:r1", "bundled", 0.15),
            controls.over_expression(neutral, "run:r1", "bundled", 0.10),
            controls.ability({"bundled": 10.0, "run:r1": 11.0}, "run:r1", "bundled", 1.25),
        ],
    }
    (line,) = traits_headline({"comparison": [cmp]})
    assert "knowledge 18/36 vs base 12/36" in line and "expression up on 3/3" in line and "controls 2/3 pass" in line
    job = tmp_path / "eval-x"
    job.mkdir()
    rows = [c.to_dict() for c in k] + e + ctrl_k + neutral + ppl
    (job / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (job / "spec.toml").write_text(
        '[settings]\nunrelated_margin = 0.15\nover_margin = 0.10\nability_bound = 1.25\n\n[persona]\nid = "p"\n'
        + "".join(f'[[persona.traits]]\nid = "{t}"\n' for t in traits)
    )
    check_headline(f"odile-traits: {line}", job / "outputs.jsonl")
    for wrong in (
        line.replace("18/36", "19/36"),
        line.replace("up on 3/3", "up on 2/3"),
        line.replace("controls 2/3", "controls 3/3"),
        line.replace("2/3 pass", "2/3 pass (1 not run)"),
        line.replace("after Holm", "after Holm (1 undecided)"),
    ):
        with pytest.raises(AssertionError):
            check_headline(f"odile-traits: {wrong}", job / "outputs.jsonl")
