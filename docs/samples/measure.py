"""Measure the template generator's data, and write the samples in this folder.

    PYTHONPATH=. python docs/samples/measure.py                 # cheap figures, demo + second persona
    PYTHONPATH=. python docs/samples/measure.py --slow          # + MiniLM relevance and perplexity
    PYTHONPATH=. python docs/samples/measure.py --write-samples # rewrite docs/samples/*.md
    PYTHONPATH=. python docs/samples/measure.py --records DIR   # measure DIR/<format>.jsonl instead

Every figure is over 500 examples per format built with seed 3407 (what the demo session builds),
except the model-based ones, on a fixed-seed sample: perplexity over the first 48 tokens of
SLOW_SAMPLE examples per format (so shorter examples are not penalised for their first tokens),
MiniLM relevance over RELEVANCE_PAIRS chat pairs. The
second persona is the one tests/test_data_template.py checks: the banks were not written for it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sessions.demo import demo_persona  # noqa: E402
from trainers.data.formats import PERSONA_FORMATS, format_module, target_text  # noqa: E402
from trainers.data.generate import template  # noqa: E402
from trainers.data.quality import (  # noqa: E402
    chat_pairs,
    persona_fields,
    reply_relevance,
    text_perplexity,
    text_quality,
)

SIZE = 500
SEED = 3407
SLOW_SAMPLE = 60  # examples per format for perplexity (the slow test uses the same sample)
RELEVANCE_PAIRS = 300
SAMPLES = 30


def second_persona():
    spec = importlib.util.spec_from_file_location("_t", ROOT / "tests" / "test_data_template.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.second_persona()


def build(persona) -> dict[str, list[dict]]:
    return {f: template.generate(format_module(f), persona, SIZE, SEED, {}).records for f in PERSONA_FORMATS}


def measure(records: dict[str, list[dict]], persona, slow: bool) -> dict[str, dict]:
    out = {}
    for fmt, recs in records.items():
        fig = {"examples": len(recs), **text_quality(recs, persona_fields(persona))}
        if slow:
            if fmt == "chat_demos":
                pairs = chat_pairs(recs)
                fig["relevance"] = reply_relevance(random.Random(0).sample(pairs, min(len(pairs), RELEVANCE_PAIRS)))
            sample = random.Random(0).sample(recs, min(SLOW_SAMPLE, len(recs)))
            fig["perplexity"] = text_perplexity([target_text(r) for r in sample])
            print(fmt, json.dumps(fig), flush=True)
        out[fmt] = fig
    return out


def render(record: dict) -> str:
    if "messages" in record:
        return "\n".join(f"**{m['role']}:** {m['content']}  " for m in record["messages"])
    return "```text\n" + record["text"] + "\n```"


def write_samples(records: dict[str, list[dict]], folder: Path) -> None:
    for fmt, recs in records.items():
        picked = random.Random(0).sample(recs, SAMPLES)
        body = [
            f"# {fmt}: {SAMPLES} template examples for the demo persona\n",
            f"A fixed-seed sample of the {SIZE} examples the demo session builds (seed {SEED}); "
            "regenerate with `PYTHONPATH=. python docs/samples/measure.py --write-samples`.\n",
        ]
        for k, r in enumerate(picked, 1):
            body.append(f"## {k}\n\n{render(r)}\n")
        (folder / f"{fmt}.md").write_text("\n".join(body), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow", action="store_true")
    ap.add_argument("--write-samples", action="store_true")
    ap.add_argument("--records", type=Path)
    ap.add_argument("--persona", choices=["demo", "second", "both"], default="both")
    args = ap.parse_args()
    personas = {"demo": demo_persona, "second": second_persona}
    names = ["demo", "second"] if args.persona == "both" else [args.persona]
    for name in names:
        persona = personas[name]()
        if args.records:
            records = {
                f: [json.loads(ln) for ln in (args.records / f"{f}.jsonl").read_text().splitlines() if ln.strip()]
                for f in PERSONA_FORMATS
            }
        else:
            records = build(persona)
        if args.write_samples and name == "demo":
            write_samples(records, Path(__file__).parent)
        print(json.dumps({name: measure(records, persona, args.slow)}, indent=1))


if __name__ == "__main__":
    main()
