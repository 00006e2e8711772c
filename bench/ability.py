"""The general-ability control scored two ways: each text alone (before 2026-12-03 evening) and the
texts as one stream (the control now, `evaluators.controls.text_perplexity`). Not a test.

    .venv/bin/python bench/ability.py NAME=ADAPTER.gguf ... [--json OUT]

Each ADAPTER is a LoRA GGUF exported by a run (`jobs/export-*/export/adapter-f16.gguf`), scored on
the bundled GGUF through llama.cpp as the traits evaluation scores it, against the bundled GGUF
alone. Per text, a table also splits the tokens into each text's first three (scored with almost
no context) and the rest, to show where the rise is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUNDLED = "bundled:smollm2-135m-instruct"
COLD = 3  # a text's first tokens, scored with almost no context


def measure(adapter: str | None) -> dict:
    from engines.llamacpp import LlamaCppEngine
    from evaluators import controls
    from evaluators.metrics.likelihood import corpus_perplexity as _ppl
    from sessions.model import EngineSpec

    engine = LlamaCppEngine(EngineSpec(id="ability", kind="llamacpp", model=BUNDLED, adapter=adapter or ""))
    per_text = [engine.logprobs("", t) for t in controls.GENERAL_TEXT]
    stream, tokens = controls.text_perplexity(engine)
    return {
        "adapter": adapter,
        "per_text": _ppl(per_text),
        "per_text_tokens": sum(map(len, per_text)),
        "per_text_cold": _ppl([r[:COLD] for r in per_text]),
        "per_text_warm": _ppl([r[COLD:] for r in per_text]),
        "stream": stream,
        "stream_tokens": tokens,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", metavar="NAME=ADAPTER.gguf")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from evaluators.controls import ABILITY_BOUND

    base = measure(None)
    rows = []
    for item in args.adapters:
        name, _, path = item.partition("=")
        if not Path(path).is_file():
            raise SystemExit(f"{path}: no such adapter GGUF")
        rows.append({"name": name, **measure(path)})
    table = Table(title=f"General-ability control, × base (bound {ABILITY_BOUND:g})")
    for col in ("run", "per text", "its first 3", "the rest", "stream"):
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['per_text'] / base['per_text']:.2f}",
            f"{r['per_text_cold'] / base['per_text_cold']:.2f}",
            f"{r['per_text_warm'] / base['per_text_warm']:.2f}",
            f"{r['stream'] / base['stream']:.2f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"base: per text {base['per_text']:.1f} ({base['per_text_tokens']} tokens; first 3 of each "
        f"{base['per_text_cold']:.0f}, the rest {base['per_text_warm']:.1f}); "
        f"as one stream {base['stream']:.1f} ({base['stream_tokens']} tokens)"
    )
    if args.json:
        args.json.write_text(json.dumps({"base": base, "runs": rows, "bound": ABILITY_BOUND}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
