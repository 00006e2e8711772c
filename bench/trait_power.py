"""How many expression replies per trait a traits evaluation needs to show its traits rising: the
chance that Fisher + Holm (the product's own test, `evaluators.probes.expression_comparison`)
finds at least NEED of a persona's traits up, simulated from measured counts. Not a test.

    .venv/bin/python bench/trait_power.py [LABEL=]FILE ... [--replies 32 64 96 128] [--need 3]
                                          [--sims 4000] [--seed 0] [--json OUT]

Each FILE is a recipe row (`bench/recipe.py`'s JSON: `traits` is the expression table) or a
demo's (`bench/demo.py`'s JSON with the traits comparison: `traits.expression`). Files with the
same label (the row's `persona`, else LABEL) are pooled: per trait, the run's and the base's
expressed replies are summed over the files. For each reply count, each simulated evaluation
draws the two models' true rates from their posteriors given the pooled counts (Jeffreys,
Beta(k + ½, n − k + ½), so that the uncertainty of a rate measured on ~200 replies counts too)
and then that many replies from each, and applies Fisher per trait and Holm across the traits.
"plug-in" uses the pooled rates as if exact. Replies are drawn independently, as the product
draws them (one seed each); the prompts' differences are inside the pooled rate.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.probes import ALPHA, UP, _verdict  # noqa: E402
from evaluators.stats import fisher_exact, holm, wilson  # noqa: E402


def expression_rows(data: dict) -> list[dict]:
    traits = data.get("traits")
    if isinstance(traits, dict):
        traits = traits.get("expression")
    if not isinstance(traits, list) or not all("run" in t and "base" in t for t in traits):
        raise ValueError("no expression table (traits[].run/base, or traits.expression[])")
    return traits


def pooled(files: list[str]) -> dict[str, dict[str, list[int]]]:
    """{label: {trait: [run_k, run_n, base_k, base_n]}} summed over the files of a label."""
    groups: dict[str, dict[str, list[int]]] = {}
    for arg in files:
        label, _, name = arg.rpartition("=") if "=" in arg else ("", "", arg)
        path = Path(name)
        try:
            data = json.loads(path.read_text())
            rows = expression_rows(data)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: {exc}") from None
        label = label or data.get("persona") or path.stem
        group = groups.setdefault(label, {})
        for t in rows:
            c = group.setdefault(t["trait"], [0, 0, 0, 0])
            for i, v in enumerate((t["run"]["k"], t["run"]["n"], t["base"]["k"], t["base"]["n"])):
                c[i] += int(v)
    return groups


@functools.cache
def _p(kr: int, kb: int, n: int) -> float:
    return fisher_exact(kr, n - kr, kb, n - kb)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def simulate(counts: dict[str, list[int]], n: int, need: int, sims: int, seed: int, posterior: bool) -> dict:
    rng = random.Random(seed)
    traits = list(counts)
    hits, ups = 0, dict.fromkeys(traits, 0)
    for _ in range(sims):
        diffs, ps = [], []
        for t in traits:
            rk, rn, bk, bn = counts[t]
            if posterior:
                pr = rng.betavariate(rk + 0.5, rn - rk + 0.5)
                pb = rng.betavariate(bk + 0.5, bn - bk + 0.5)
            else:
                pr, pb = rk / rn, bk / bn
            kr, kb = _binomial(rng, n, pr), _binomial(rng, n, pb)
            diffs.append(kr - kb)
            ps.append(_p(kr, kb, n))
        up = [_verdict(d, p) == UP for d, p in zip(diffs, holm(ps))]
        hits += sum(up) >= need
        for t, u in zip(traits, up):
            ups[t] += u
    low, high = wilson(hits, sims)
    return {
        "replies": n,
        "p_at_least": hits / sims,
        "interval": [low, high],
        "per_trait": {t: ups[t] / sims for t in traits},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--replies", type=int, nargs="+", default=[32, 64, 96, 128])
    ap.add_argument("--need", type=int, default=3, help="traits up after Holm (issue 12: 3 of 5)")
    ap.add_argument("--sims", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    out: dict = {"need": args.need, "alpha": ALPHA, "sims": args.sims, "seed": args.seed, "groups": {}}
    for label, counts in pooled(args.files).items():
        print(f"\n{label}: pooled expressed replies, run vs base")
        for t, (rk, rn, bk, bn) in counts.items():
            print(f"  {t:<16} {rk:>4}/{rn:<4} {rk / rn:6.1%}   {bk:>4}/{bn:<4} {bk / bn:6.1%}")
        print(f"\n  replies per trait per model   P(>= {args.need} up after Holm)   [95% sim. interval]   plug-in")
        rows = []
        for n in args.replies:
            post = simulate(counts, n, args.need, args.sims, args.seed, posterior=True)
            plug = simulate(counts, n, args.need, args.sims, args.seed, posterior=False)
            rows.append({"posterior": post, "plug_in": plug})
            lo, hi = post["interval"]
            print(f"  {n:>26}   {post['p_at_least']:>27.1%}   [{lo:5.1%}, {hi:5.1%}]   {plug['p_at_least']:>8.1%}")
        print("\n  P(trait up after Holm), posterior, by replies per trait:")
        print("  " + " " * 16 + "".join(f"{n:>8}" for n in args.replies))
        for t in counts:
            print(f"  {t:<16}" + "".join(f"{r['posterior']['per_trait'][t]:>8.0%}" for r in rows))
        out["groups"][label] = {"counts": counts, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
