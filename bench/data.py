"""Benchmark of the dataset generators, printed as a table (not a test).

    .venv/bin/python bench/data.py [--size 500] [--llm-size 4] [--no-llm]

For each persona format: examples per second of the template generator at `--size` examples
(the format study's 500) with the near-duplicate rate and distinct-2 of what it made; then
examples per second of the llm generator with the bundled model through llama.cpp, and the
tokens per second the engine reached inside that job (generated tokens, counted with the
model's own tokenizer, over the time spent in chat calls).

Ratios are against baselines measured in the same run: the template generator against the llm
generator (examples/s), and the engine's tokens/s inside the job against a raw decode of the
same engine (a one-line prompt, same sampling, through the same Teacher accounting) — what the
generator's long prompts and parsing cost on top of bare decoding.
"""

from __future__ import annotations

import argparse
import platform
import time

from rich.console import Console
from rich.table import Table

from sessions.demo import demo_persona
from sessions.model import EngineSpec
from trainers.dataset_quality import distinct_n, near_duplicate_report
from trainers.formats import PERSONA_FORMATS, format_module, record_text
from trainers.generate import llm, template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--llm-size", type=int, default=4)
    parser.add_argument("--no-llm", action="store_true")
    parser.add_argument("--seed", type=int, default=3407)
    args = parser.parse_args()
    persona = demo_persona()
    console = Console(width=150)

    table = Table(title=f"template generator, demo persona, {args.size} examples per format")
    template_rate: dict[str, float] = {}
    for col in ("format", "examples", "seconds", "examples/s", "candidates", "near-dup rejected",
                "near-dup pairs left", "distinct-2"):
        table.add_column(col, justify="right" if col != "format" else "left")
    for fmt in PERSONA_FORMATS:
        t0 = time.perf_counter()
        res = template.generate(format_module(fmt), persona, args.size, args.seed, {})
        dt = time.perf_counter() - t0
        texts = [record_text(r) for r in res.records]
        nd = near_duplicate_report(texts)
        template_rate[fmt] = len(res.records) / dt
        table.add_row(fmt, str(len(res.records)), f"{dt:.3f}", f"{len(res.records) / dt:,.0f}", str(res.attempts),
                      str(res.near_duplicates), f"{nd['pairs']} ({nd['pair_fraction']:.3%})",
                      f"{distinct_n(texts, 2):.3f}")
    console.print(table)

    if args.no_llm:
        return
    from engines import open_engine

    espec = EngineSpec(id="bundled", kind="llamacpp")
    t0 = time.perf_counter()
    engine = open_engine(espec)
    load_s = time.perf_counter() - t0
    # Baseline: bare decoding through the same engine and accounting, a one-line prompt.
    raw = llm.Teacher(engine, "'bundled'", args.seed)
    for i in range(3):
        raw([{"role": "user", "content": f"Tell me a short story about a lighthouse, number {i + 1}."}], 128)
    raw_rate = raw.stats.tokens_per_s
    table = Table(title=f"llm generator, bundled model through llama.cpp (load {load_s:.2f} s), "
                        f"{args.llm_size} examples per format; raw decode baseline {raw_rate:.1f} tokens/s "
                        f"({raw.stats.output_tokens} tokens in {raw.stats.calls} calls)")
    for col in ("format", "examples", "malformed", "teacher calls", "seconds", "examples/s",
                "tokens generated", "engine tokens/s", "x raw decode", "template x faster"):
        table.add_column(col, justify="right" if col != "format" else "left")
    try:
        for fmt in PERSONA_FORMATS:
            teacher = llm.Teacher(engine, "'bundled'", args.seed)
            t0 = time.perf_counter()
            res = llm.generate(format_module(fmt), persona, teacher, args.llm_size, args.seed, {},
                               max_attempts=args.llm_size * 3)
            dt = time.perf_counter() - t0
            s = res.teacher
            table.add_row(fmt, str(len(res.records)), str(res.malformed), str(s.calls), f"{dt:.1f}",
                          f"{len(res.records) / dt:.3f}", str(s.output_tokens), f"{s.tokens_per_s:.1f}",
                          f"{s.tokens_per_s / raw_rate:.2f}" if raw_rate else "-",
                          f"{template_rate[fmt] / (len(res.records) / dt):,.0f}" if res.records else "-")
    finally:
        engine.close()
    console.print(table)
    console.print(f"[dim]{platform.processor() or platform.machine()}, python {platform.python_version()}[/]")


if __name__ == "__main__":
    main()
