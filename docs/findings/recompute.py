"""Recompute the format comparison's figures in docs/findings.md from the files committed beside
this script: every scored item of the study's traits evaluation (`odile-fc-traits-outputs.jsonl.gz`:
each knowledge probe's log-probabilities and verdict, each reply with its label, each control item)
and the job's own scores (`odile-fc-traits-scores.json`, paths made relative).

    .venv/bin/python docs/findings/recompute.py            # the first run (2026-12-03)
    .venv/bin/python docs/findings/recompute.py rerun      # the rerun (2026-12-04): odile-fc-rerun-*

It recomputes each format against the base (knowledge by exact McNemar, expression per trait by
Fisher with Holm, the three controls) and the formats against each other with the product's own
functions, checks them against the job's scores, and prints both tables at 80 columns.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from evaluators import controls  # noqa: E402
from evaluators.experiments import format_comparison as fc  # noqa: E402
from evaluators.probes import expression_comparison, knowledge_comparison  # noqa: E402


def main() -> int:
    prefix = "odile-fc-rerun" if sys.argv[1:] == ["rerun"] else "odile-fc"
    rows = [json.loads(line) for line in gzip.open(HERE / f"{prefix}-traits-outputs.jsonl.gz", "rt")]
    scores = json.loads((HERE / f"{prefix}-traits-scores.json").read_text())
    col = fc.column_of(fc.FormatComparison(persona="odile"))
    base = next(m for m, c in col.items() if c == "base")
    traits = list(dict.fromkeys(r["trait"] for r in rows if r["kind"] == "knowledge"))
    know = [r for r in rows if r["kind"] == "knowledge"]
    expr = [r for r in rows if r["kind"] == "expression"]
    ctrl_k = [r for r in rows if r["kind"] == "control_knowledge"]
    ctrl_n = [r for r in rows if r["kind"] == "control_neutral"]
    ppl = {r["model"]: r["metrics"]["perplexity"] for r in rows if r["kind"] == "control_perplexity"}
    recorded = {c["model"]: c for c in scores["comparison"]}

    from rich import box

    table = Table(
        title="Each format against the base (same engine, same items)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    heads = ("", "knows", "pts [95%]", "p", "up", "unrel.", "over", "ppl×")
    for name in heads:
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    for model, fmt in col.items():
        if fmt == "base":
            continue
        k = knowledge_comparison(know, model, base, traits)["overall"]
        e = expression_comparison(expr, model, base, traits)["traits"]
        u = controls.unrelated(ctrl_k, model, base)
        o = controls.over_expression(ctrl_n, model, base)
        a = controls.ability(ppl, model, base)
        mine = recorded[model]
        assert k == mine["knowledge"]["overall"], f"{fmt}: knowledge differs from the job's scores"
        assert e == mine["expression"]["traits"], f"{fmt}: expression differs from the job's scores"

        # The rules' wording is today's (the unrelated persona's became one-sided on 2026-12-03,
        # and all three formats pass it either way); every count, p-value and verdict must match.
        def unworded(cs: list[dict]) -> list[dict]:
            return [{k: v for k, v in c.items() if k != "rule"} for c in cs]

        assert unworded([u, o, a]) == unworded(mine["controls"]), f"{fmt}: a control differs from the job's scores"
        lo, hi = k["interval"]
        up = [t["trait"] for t in e if t["verdict"] == "up"]
        table.add_row(
            fc.SHORT[fmt],
            f"{k['run']['k']} vs {k['base']['k']}",
            f"{100 * k['diff']:+.0f} [{100 * lo:+.0f}, {100 * hi:+.0f}]",
            f"{k['p']:.2g}",
            f"{len(up)}",
            f"{u['run']['k']} vs {u['base']['k']} {'ok' if u['passed'] else 'FAIL'}",
            f"{o['run']['k']} vs {o['base']['k']} {'ok' if o['passed'] else 'FAIL'}",
            f"{a['ratio']:.2f} {'ok' if a['passed'] else 'FAIL'}",
        )
    table.caption = (
        "knows: of 60 knowledge probes, run vs base (exact McNemar p); up: of 5 traits, expression "
        "up (Fisher, Holm); unrel.: of 16 probes of a persona never trained, ≤ base + 15 pts; over: of "
        "32 neutral replies touching a trait, ≤ base + 10 pts; ppl×: plain-text perplexity ≤ 1.25 × base."
    )
    table.caption_justify = "left"
    console = Console(width=80)
    console.print(table)
    leak = {"expression": {}}  # the study's own check found no probe in the training records
    console.print(fc.pairs_table(fc.format_pairs(rows, col, leak)))
    print("Every figure above matches the job's scores.json.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
