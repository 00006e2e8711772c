"""How long a traits evaluation's expression replies are, per model, and which of them the marker
scorer would still label expressed had the replies been cut at fewer tokens. Not a test.

    .venv/bin/python bench/reply_length.py OUTPUTS.jsonl ... [--caps 32 48 64] [--json OUT]

Each OUTPUTS.jsonl is a traits evaluation's `outputs.jsonl` (the demo's or `bench/recipe.py`'s,
scored with the "markers" labeller). A reply is re-tokenised with the bundled model's tokenizer (`engines.models.load_tokenizer`),
cut at each cap and labelled again with the trait's markers (`evaluators.probes.MarkerLabeller`,
the persona from `sessions.demo.PERSONAS`). A seeded reply generated with a lower `max_tokens`
is the first tokens of the same reply generated with a higher one (the sampler draws token by
token), so the cut is what the lower cap would have produced, up to re-tokenisation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUNDLED = "bundled:smollm2-135m-instruct"


def measure(path: Path, caps: list[int], tokenize, detokenize) -> dict:
    from evaluators.probes import EXPRESSED, MarkerLabeller
    from sessions.demo import PERSONAS

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    replies = [r for r in rows if r.get("kind") == "expression"]
    if not replies:
        raise SystemExit(f"{path}: no expression replies")
    persona = PERSONAS[replies[0]["persona"]]()
    traits = {t.id: t for t in persona.traits}
    labeller = MarkerLabeller()
    models: dict[str, dict] = {}
    for r in replies:
        m = models.setdefault(r["model"], {"replies": 0, "tokens": 0, "expressed": 0, "cut": {c: [0, 0] for c in caps}})
        toks = tokenize(r["reply"])
        m["replies"] += 1
        m["tokens"] += len(toks)
        m["expressed"] += r["label"] == EXPRESSED
        for c in caps:
            cut = labeller.label(persona, traits[r["trait"]], r["prompt"], detokenize(toks[:c])).label
            m["cut"][c][0] += cut == EXPRESSED
            m["cut"][c][1] += min(len(toks), c)
    return {"file": _relative(path), "persona": persona.id, "models": models}


def _relative(path: Path) -> str:
    """The file as `bench/recipe.py` names its scores (from its OUT folder: NAME/WORKSPACE/jobs/JOB/...),
    so that a result written into the repository names no path of this machine."""
    parts = path.parts
    if "jobs" in parts[2:]:
        return "/".join(parts[parts.index("jobs", 2) - 2 :])
    return path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outputs", nargs="+", type=Path)
    ap.add_argument("--caps", type=int, nargs="+", default=[32, 48, 64])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from engines.models import load_tokenizer

    tok = load_tokenizer(BUNDLED)

    def tokenize(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    def detokenize(toks: list[int]) -> str:
        return tok.decode(toks)

    results = [measure(p, args.caps, tokenize, detokenize) for p in args.outputs]
    head = "".join(f"{'cut at ' + str(c):>13}" for c in args.caps)
    print(f"{'file / model':<44} {'replies':>7} {'tokens':>7}  expressed{head}")
    for res in results:
        print(res["file"])
        for name, m in res["models"].items():
            cuts = "".join(f"  {m['cut'][c][0]:>4} ({m['cut'][c][1] / m['replies']:4.1f})" for c in args.caps)
            print(f"  {name[:42]:<42} {m['replies']:>7} {m['tokens'] / m['replies']:>7.1f}  {m['expressed']:>9}{cuts}")
    print("\nexpressed: replies the marker scorer labels expressed; under each cap: those still expressed")
    print("when cut there, and (in brackets) the mean tokens a reply would have had.")
    if args.json:
        args.json.write_text(json.dumps({"caps": args.caps, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
