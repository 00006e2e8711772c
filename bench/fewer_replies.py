"""What a traits evaluation would have shown with fewer replies per prompt: its own replies, cut.

    .venv/bin/python bench/fewer_replies.py JOB_DIR --samples 4 [--samples 8 ...]

A traits evaluation's reply for sample i of a prompt has the same seed whatever the number of
samples asked for, so the replies of an evaluation at 12 samples include, reply for reply, those
an evaluation at 4 would have drawn (the base's replies of two evaluations at 4 and at 12 samples
are the same text). This keeps each prompt's first N samples of JOB_DIR/outputs.jsonl and scores
them as the evaluation does (`evaluators.probes.expression_comparison`: Fisher's exact per trait,
Holm across traits), printing one line per trait and the count of traits up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", type=Path, help="a finished traits evaluation's job folder")
    ap.add_argument("--samples", type=int, action="append", required=True, help="replies per prompt to keep")
    args = ap.parse_args(argv)

    from evaluators.probes import expression_comparison

    scores = json.loads((args.job / "scores.json").read_text())
    comparison = scores["comparison"][0]
    model, base = comparison["model"], comparison["base"]
    traits = [row["trait"] for row in comparison["expression"]["traits"]]
    rows = [json.loads(line) for line in (args.job / "outputs.jsonl").read_text().splitlines() if line.strip()]
    cells = [r for r in rows if r.get("kind") == "expression"]
    print(f"{args.job}: {model} against {base}, {len(cells)} expression replies")
    for n in args.samples:
        kept = [c for c in cells if int(c.get("sample", 0)) < n]
        result = expression_comparison(kept, model, base, traits)
        up = sum(row["verdict"] == "up" for row in result["traits"])
        print(f"-- first {n} samples per prompt: {up} of {len(traits)} traits up after Holm")
        for row in result["traits"]:
            run, bas = row["run"], row["base"]
            print(
                f"   {row['trait']:<18} run {run['k']:>3}/{run['n']:<3} base {bas['k']:>3}/{bas['n']:<3} "
                f"p {row['p']:.3g}  Holm {row['p_holm']:.3g}  {row['verdict']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
