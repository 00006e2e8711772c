"""How much does answer length decide a knowledge probe? Measured on the base model (not a test).

    .venv/bin/python bench/knowledge_bias.py [--model bundled:smollm2-135m-instruct] [--old REV]

A base model knows nothing about the demo persona, so a fair instrument should find it "knowing"
about half the probes at most by chance, and its verdicts should not follow answer length. For
each probe set (the demo persona now; the one at git revision --old, when given; the unrelated
control persona) this prints how many probes the base "knows" by summed log-probability and by
per-token mean, and how often each verdict picks the shorter answer (in tokens).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def persona_at(rev: str):
    """The demo persona as it was at git revision `rev`."""
    import types

    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:sessions/demo.py"], check=True, capture_output=True, text=True
    ).stdout
    mod = types.ModuleType("old_demo")
    exec(compile(src, f"{rev}:sessions/demo.py", "exec"), mod.__dict__)  # noqa: S102 - our own file
    return mod.demo_persona()


def measure(engine, persona, model: str) -> dict:
    from evaluators.probes import knowledge_cells

    cells = knowledge_cells(engine, persona, "base", model_name=model)
    n = len(cells)
    uneven = [c for c in cells if c.tokens_affirm != c.tokens_deny]
    affirm_longer = sum(c.tokens_affirm > c.tokens_deny for c in cells)

    def shorter_picked(verdict) -> int:
        # Of the probes whose answers differ in length: how often the verdict chose the shorter.
        return sum(verdict(c) == (c.tokens_affirm < c.tokens_deny) for c in uneven)

    return {
        "n": n,
        "uneven": len(uneven),
        "affirm_longer": affirm_longer,
        "sum": sum(c.knows_total for c in cells),
        "mean": sum(c.knows_mean for c in cells),
        "sum_short": shorter_picked(lambda c: c.knows_total),
        "mean_short": shorter_picked(lambda c: c.knows_mean),
        "max_gap": max((abs(c.tokens_affirm - c.tokens_deny) for c in cells), default=0),
    }


def main() -> None:
    from engines import open_engine
    from evaluators.controls import unrelated_persona
    from sessions.demo import demo_persona
    from sessions.model import EngineSpec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--old", default="", help="a git revision whose demo persona to measure too")
    args = ap.parse_args()
    sets = [("demo persona (now)", demo_persona())]
    if args.old:
        sets.insert(0, (f"demo persona at {args.old}", persona_at(args.old)))
    sets.append(("unrelated control persona", unrelated_persona()))
    engine = open_engine(EngineSpec(id="base", kind="llamacpp", model=args.model))
    table = Table(title=f"Base model {args.model}: knowledge probes 'known' by sum vs per-token mean")
    for col in (
        "probe set",
        "probes",
        "answers of unequal length",
        "affirm longer",
        "max gap (tokens)",
        "known by sum",
        "known by mean",
        "sum picks shorter",
        "mean picks shorter",
    ):
        table.add_column(col, justify="left" if col == "probe set" else "right")
    try:
        for name, persona in sets:
            r = measure(engine, persona, args.model)
            print(name, r, flush=True)  # each row as it comes: a loaded machine takes minutes per set
            u = r["uneven"] or 1
            table.add_row(
                name,
                str(r["n"]),
                str(r["uneven"]),
                str(r["affirm_longer"]),
                str(r["max_gap"]),
                f"{r['sum']}/{r['n']}",
                f"{r['mean']}/{r['n']}",
                f"{r['sum_short']}/{r['uneven']} ({r['sum_short'] / u:.0%})",
                f"{r['mean_short']}/{r['uneven']} ({r['mean_short'] / u:.0%})",
            )
    finally:
        engine.close()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
