"""Benchmark of the evaluation metrics, printed as a table (not a test).

    .venv/bin/python bench/eval.py [--pairs 1000] [--candidates 40] [--threads 0] [--no-hf]

Pairs per second of sentence BLEU, corpus BLEU, ROUGE-L and unigram F1 over `--pairs` pairs of
SPC-like replies; BERTScore (packaged MiniLM, CPU) pairs per second, load apart; and hits@1
candidates scored per second (one log-likelihood each, the shared prompt cached) through
llama.cpp and through transformers on the same bundled model, with their ratio; and the drift
evaluation's conversation turns per second (a real eval job, run inline on the bundled model, the
user's turns replayed from Synthetic-Persona-Chat), with probes at turn 1 only and at the default
doubling turns. All numbers come from this one run on this machine.

    .venv/bin/python bench/eval.py --drift-only [--drift-turns 8] [--spc PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.metrics import likelihood, reference
from evaluators.probes import chat_messages, render_chat
from sessions.model import EngineSpec

WORDS = (
    "i love to bake cookies and knit on sundays my dog is called rex we live near the sea "
    "what do you do for a living i am a nurse at the hospital that sounds like hard work "
    "it is but i enjoy helping people do you have any hobbies i like hiking and reading"
).split()


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."


def _rate(fn, n: int) -> tuple[float, float]:
    t = time.perf_counter()
    fn()
    s = time.perf_counter() - t
    return s, n / s if s else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=40, help="hits@1 candidates scored per engine")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp and torch threads (0 = their defaults)")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers engine")
    parser.add_argument("--drift-only", action="store_true", help="only the drift evaluation's turns per second")
    parser.add_argument("--no-drift", action="store_true", help="skip the drift evaluation")
    parser.add_argument("--drift-turns", type=int, default=8, help="turns per drift conversation")
    parser.add_argument(
        "--spc",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/synthetic-persona-chat",
        help="the Synthetic-Persona-Chat CSV or its folder",
    )
    args = parser.parse_args()
    if args.drift_only:
        drift_bench(args, Console(width=120))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # BERTScore and the transformers engine
    rng = random.Random(0)
    hyps = [_sentence(rng) for _ in range(args.pairs)]
    refs = [_sentence(rng) for _ in range(args.pairs)]
    console = Console(width=120)

    table = Table(title=f"reference metrics, {args.pairs} pairs (1 CPU process)")
    for col in ("metric", "seconds", "pairs/s", "note"):
        table.add_column(col, justify="left" if col in ("metric", "note") else "right")
    reference.rouge_l("warm", "up")  # the scorer is built once per process
    rows = [
        (
            "BLEU (sentence)",
            lambda: [reference.bleu_sentence(h, r) for h, r in zip(hyps, refs)],
            "sacrebleu, exp smoothing",
        ),
        ("BLEU (corpus)", lambda: reference.bleu_corpus(hyps, refs), "sacrebleu 13a"),
        ("ROUGE-L", lambda: [reference.rouge_l(h, r) for h, r in zip(hyps, refs)], "rouge-score, no stemming"),
        ("unigram F1", lambda: [reference.unigram_f1(h, r) for h, r in zip(hyps, refs)], "ParlAI normalisation"),
    ]
    for name, fn, note in rows:
        s, rate = _rate(fn, args.pairs)
        table.add_row(name, f"{s:.3f}", f"{rate:,.0f}", note)
    t = time.perf_counter()
    reference.bertscore(hyps[:2], refs[:2])
    load = time.perf_counter() - t
    s, rate = _rate(lambda: reference.bertscore(hyps, refs), args.pairs)
    table.add_row(
        "BERTScore P/R/F1",
        f"{s:.3f}",
        f"{rate:,.0f}",
        f"MiniLM-L6 layer 6, batch 64, torch threads {__import__('torch').get_num_threads()}; load {load:.1f} s",
    )
    s1, rate1 = _rate(lambda: [reference.bertscore([h], [r]) for h, r in zip(hyps[:100], refs[:100])], 100)
    table.add_row("BERTScore, one pair a call", f"{s1:.3f}", f"{rate1:,.0f}", "as the eval job scores each reply")
    console.print(table)

    from engines import open_engine

    prompt_msgs = chat_messages("Hi! What do you like to do on weekends?", "Your persona:\n- I love to bake cookies.")
    candidates = [_sentence(rng) for _ in range(args.candidates)]
    table = Table(title=f"hits@1 candidates scored per second, bundled SmolLM2-135M, {args.candidates} candidates")
    for col in ("engine", "load s", "seconds", "candidates/s", "tokens/candidate"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    speeds = {}
    engines = [("llama.cpp (Q4_1 GGUF)", EngineSpec(id="l", kind="llamacpp", threads=args.threads))]
    if not args.no_hf:
        engines.append(
            ("transformers (fp32, dequantised)", EngineSpec(id="h", kind="transformers", threads=args.threads))
        )
    for label, spec in engines:
        t = time.perf_counter()
        engine = open_engine(spec)
        prompt = render_chat(engine, prompt_msgs, spec.model)
        engine.logprobs(prompt, "warm up")
        load = time.perf_counter() - t
        tokens = []
        t = time.perf_counter()
        for c in candidates:
            tokens.append(len(engine.logprobs(prompt, c)))
        s = time.perf_counter() - t
        speeds[label] = args.candidates / s
        table.add_row(label, f"{load:.1f}", f"{s:.2f}", f"{speeds[label]:.1f}", f"{sum(tokens) / len(tokens):.1f}")
        # A whole hits@1 question (20 candidates) for scale:
        likelihood.rank_true_reply(engine, prompt, candidates[0], candidates[1:20])
        engine.close()
    console.print(table)
    if len(speeds) == 2:
        a, b = speeds.values()
        console.print(f"llama.cpp / transformers: {a / b:.2f}x")
    if not args.no_drift:
        drift_bench(args, console)
    console.print(
        f"[dim]{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end[/dim]"
    )


def drift_bench(args: argparse.Namespace, console: Console) -> None:
    """Turns per second of a drift eval job (one model, one conversation) with probes at turn 1
    only, then at the default turns (1, 2, 4, ... and the last): what probing costs."""
    from evaluators.evaluate.job import run_eval_inline
    from evaluators.evaluate.reader import load_scores
    from sessions.demo import demo_session
    from sessions.model import EvalSpec
    from sessions.store import SessionFile

    table = Table(
        title=f"drift evaluation, bundled SmolLM2-135M (llama.cpp), 1 conversation of {args.drift_turns} turns, "
        "replies ≤ 48 tokens, 1 probe of each kind per trait (5 traits)"
    )
    for col in ("probed turns", "seconds", "turns", "probe calls", "turns/s", "s per turn"):
        table.add_column(col, justify="left" if col == "probed turns" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        session = demo_session()
        session.engines[0].threads = args.threads
        common = {"data": str(args.spc), "turns": args.drift_turns, "conversations": 1, "probes": 1, "max_tokens": 48}
        session.evals = [
            EvalSpec(id="few", kind="drift", models=["bundled"], extra={**common, "probe_turns": [1]}),
            EvalSpec(id="doubling", kind="drift", models=["bundled"], extra=common),
        ]
        path = Path(tmp) / "bench.toml"
        SessionFile.create(path, session)
        sf = SessionFile.load(path)
        for spec in session.evals:
            job_dir = run_eval_inline(sf, spec.id)
            scores = load_scores(job_dir)
            rows = [json.loads(line) for line in (job_dir / "outputs.jsonl").read_text().splitlines()]
            turns = sum(r["kind"] == "drift_turn" for r in rows)
            probes = sum(bool(r.get("fork")) for r in rows)
            s = float(scores["seconds"])
            table.add_row(
                ", ".join(map(str, scores["probe_turns"])),
                f"{s:.1f}",
                str(turns),
                str(probes),
                f"{turns / s:.2f}",
                f"{s / turns:.2f}",
            )
    console.print(table)
    console.print(f"[dim]load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end[/dim]")


if __name__ == "__main__":
    main()
