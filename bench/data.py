"""Benchmark of the dataset generators, printed as a table (not a test).

    .venv/bin/python bench/data.py [--size 500] [--llm-size 4] [--no-llm]
                                   [--teacher-size 24] [--latency 0.2] [--no-teacher]

For each persona format: examples per second of the template generator at `--size` examples
(the format study's 500) with the near-duplicate rate and distinct-2 of what it made; then
examples per second of the llm generator with the bundled model through llama.cpp (replies
constrained by the prompt pack's schema as a grammar), and the
tokens per second the engine reached inside that job (generated tokens, counted with the
model's own tokenizer, over the time spent in chat calls).

Then the teacher pipeline's concurrency: examples/s of the llm generator against a local
OpenAI-compatible server (tests/fake_openai_server.py) that takes `--latency` seconds per
request, with 1, 4 and 8 requests in flight, in one run; the ratio is against 1 in flight (the
issue asks >= 2.5x at 4). The embedding filter is off there (it is measured as its own row).

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
from trainers.data.formats import PERSONA_FORMATS, format_module, record_text
from trainers.data.generate import llm, template
from trainers.data.generate.llm_settings import TeacherSettings
from trainers.data.quality import distinct_n, near_duplicate_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--llm-size", type=int, default=4)
    parser.add_argument("--no-llm", action="store_true")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--teacher-size", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--no-teacher", action="store_true")
    args = parser.parse_args()
    persona = demo_persona()
    console = Console(width=150)
    if not args.no_teacher:
        console.print(concurrency_table(args.teacher_size, args.latency, args.seed))

    table = Table(title=f"template generator, demo persona, {args.size} examples per format")
    template_rate: dict[str, float] = {}
    for col in (
        "format",
        "examples",
        "seconds",
        "examples/s",
        "candidates",
        "near-dup rejected",
        "near-dup pairs left",
        "distinct-2",
    ):
        table.add_column(col, justify="right" if col != "format" else "left")
    for fmt in PERSONA_FORMATS:
        t0 = time.perf_counter()
        res = template.generate(format_module(fmt), persona, args.size, args.seed, {})
        dt = time.perf_counter() - t0
        texts = [record_text(r) for r in res.records]
        nd = near_duplicate_report(texts)
        template_rate[fmt] = len(res.records) / dt
        table.add_row(
            fmt,
            str(len(res.records)),
            f"{dt:.3f}",
            f"{len(res.records) / dt:,.0f}",
            str(res.attempts),
            str(res.near_duplicates),
            f"{nd['pairs']} ({nd['pair_fraction']:.3%})",
            f"{distinct_n(texts, 2):.3f}",
        )
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
    table = Table(
        title=f"llm generator, bundled model through llama.cpp (load {load_s:.2f} s), "
        f"{args.llm_size} examples per format; raw decode baseline {raw_rate:.1f} tokens/s "
        f"({raw.stats.output_tokens} tokens in {raw.stats.calls} calls)"
    )
    for col in (
        "format",
        "examples",
        "malformed",
        "teacher calls",
        "seconds",
        "examples/s",
        "tokens generated",
        "engine tokens/s",
        "x raw decode",
        "template x faster",
    ):
        table.add_column(col, justify="right" if col != "format" else "left")
    try:
        for fmt in PERSONA_FORMATS:
            settings = TeacherSettings(max_attempts=args.llm_size * 3, embedding_threshold=0.0)
            teacher = llm.Teacher(engine, "'bundled'", args.seed, settings=settings)
            t0 = time.perf_counter()
            res = llm.generate(fmt, persona, teacher, args.llm_size, args.seed, {}, engine_kind="llamacpp")
            dt = time.perf_counter() - t0
            s = res.teacher
            table.add_row(
                fmt,
                str(len(res.records)),
                str(res.malformed),
                str(s.calls),
                f"{dt:.1f}",
                f"{len(res.records) / dt:.3f}",
                str(s.output_tokens),
                f"{s.tokens_per_s:.1f}",
                f"{s.tokens_per_s / raw_rate:.2f}" if raw_rate else "-",
                f"{template_rate[fmt] / (len(res.records) / dt):,.0f}" if res.records else "-",
            )
    finally:
        engine.close()
    console.print(table)
    console.print(f"[dim]{platform.processor() or platform.machine()}, python {platform.python_version()}[/]")


def concurrency_table(size: int, latency: float, seed: int) -> Table:
    """Examples/s of the llm generator at 1, 4 and 8 in flight against a server with fixed latency."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fake_openai_server import FakeOpenAI
    from sessions.demo import demo_session
    from sessions.model import DatasetSpec
    from trainers.data.build import build_dataset

    table = Table(
        title=f"llm generator against a local OpenAI-wire server, {latency:.2f} s per request, "
        f"{size} first_person examples"
    )
    for col in (
        "in flight",
        "embedding filter",
        "examples",
        "requests",
        "seconds",
        "examples/s",
        "x 1 in flight",
        "max in flight seen",
    ):
        table.add_column(col, justify="right")
    base = None
    rows = [(1, 0.0), (4, 0.0), (8, 0.0), (8, 0.93)]
    with FakeOpenAI(latency=latency) as server:
        session = demo_session()
        session.engines.append(EngineSpec(id="fake", kind="openai", base_url=server.url, model="teacher-1"))
        warm = DatasetSpec(
            id="w",
            format="first_person",
            persona="odile",
            generator="llm",
            engine="fake",
            size=1,
            held_out=0,
            extra={"token_stats": False, "llm": {"embedding_threshold": 0.0, "resume": False}},
        )
        with tempfile.TemporaryDirectory() as ws:  # imports and the first connection, outside the timings
            build_dataset(session, warm, ws)
        for concurrency, embed in rows:
            spec = DatasetSpec(
                id="b",
                format="first_person",
                persona="odile",
                generator="llm",
                engine="fake",
                size=size,
                held_out=0,
                seed=seed,
                extra={
                    "token_stats": False,
                    "llm": {"concurrency": concurrency, "embedding_threshold": embed, "resume": False},
                },
            )
            if embed:  # load MiniLM outside the timed build
                from engines.embeddings import shared_embedder

                shared_embedder().embed(["warm up"])
            server.max_in_flight = 0
            asked = len(server.requests)
            with tempfile.TemporaryDirectory() as ws:
                t0 = time.perf_counter()
                res = build_dataset(session, spec, ws)
                dt = time.perf_counter() - t0
            rate = res.stats["count"] / dt
            base = base or rate
            table.add_row(
                str(concurrency),
                "MiniLM" if embed else "off",
                str(res.stats["count"]),
                str(len(server.requests) - asked),
                f"{dt:.2f}",
                f"{rate:.2f}",
                f"{rate / base:.2f}",
                str(server.max_in_flight),
            )
    return table


if __name__ == "__main__":
    main()
