"""Benchmark of batched chat decoding in llama.cpp, printed as a table (not a test).

    .venv/bin/python bench/batch_decode.py [--adapter LORA.gguf] [--replies 64] [--sizes 4,8,16,32]
                                           [--max-tokens 64] [--json OUT]

In one run, on the bundled GGUF (with a LoRA GGUF when --adapter is given) and the same seeded
requests an evaluation makes (open prompts, T 0.7, top_p 0.95, seeds as `expression_cells`
gives them): the baseline is `chat`, one reply after another, each from a fresh context; each
other row is `engines.base.chat_many` with that many replies decoded at once. Rows are
interleaved over --repeats and the median is printed, with the load average. "same as chat" counts the
replies that are token for token the baseline's: the rest parted where a batched matrix product
rounded differently (engines.llamacpp.LlamaCppEngine.chat_batch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

PROMPTS = [
    "How do I get from the train station to the harbour?",
    "What should I cook tonight?",
    "Any tips for a rainy weekend?",
    "What do you do to relax?",
    "What did you do last summer?",
    "Recommend a present for a friend.",
    "How was your week?",
    "What is your favourite place in town?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", default="", help="a LoRA GGUF to decode with (as the evaluation's run)")
    ap.add_argument("--replies", type=int, default=64)
    ap.add_argument("--sizes", default="4,8,16,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from engines import open_engine
    from engines.base import chat_many
    from sessions.model import EngineSpec

    engine = open_engine(EngineSpec(id="bench", kind="llamacpp", adapter=args.adapter))
    kw = {"max_tokens": args.max_tokens, "temperature": 0.7, "top_p": 0.95}
    reqs = [
        ([{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}], {**kw, "seed": 1000 * (k % len(PROMPTS)) + k // 8})
        for k in range(args.replies)
    ]
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]

    def baseline() -> list[str]:
        out = []
        for m, k in reqs:
            engine.llm.reset()  # a fresh context each, as a batched group's prompts are evaluated
            out.append(engine.chat(m, **k))
        return out

    def batched(size: int) -> list[str]:
        engine.batch_size = size
        return chat_many(engine, reqs)

    runs: dict[str, list[float]] = {}
    replies: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, fn in [("chat", baseline), *((f"batch {n}", lambda n=n: batched(n)) for n in sizes)]:
            t0 = time.perf_counter()
            got = fn()
            runs.setdefault(name, []).append(time.perf_counter() - t0)
            if replies.setdefault(name, got) != got:
                raise SystemExit(f"{name}: a repeat gave other replies than the first")
    tokens = {n: sum(len(engine.llm.tokenize(r.encode(), add_bos=False)) for r in rs) for n, rs in replies.items()}
    engine.close()

    base = statistics.median(runs["chat"])
    adapter_name = Path(args.adapter).name if args.adapter else ""  # no machine paths in results
    title = (
        f"{args.replies} replies <= {args.max_tokens} tokens, "
        f"{'bundled GGUF + ' + adapter_name if adapter_name else 'bundled GGUF'}, "
        f"median of {args.repeats}, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    table = Table(title=title)
    for col in ("decoding", "wall s", "reply tokens", "tokens/s", "vs chat", "same as chat"):
        table.add_column(col, justify="right" if col != "decoding" else "left")
    rows = []
    for name, times in runs.items():
        wall = statistics.median(times)
        same = sum(a == b for a, b in zip(replies[name], replies["chat"]))
        row = {
            "decoding": name,
            "wall_s": round(wall, 2),
            "tokens": tokens[name],
            "tokens_per_s": round(tokens[name] / wall, 1),
            "speedup": round(base / wall, 2),
            "same_as_chat": same,
            "replies": args.replies,
        }
        rows.append(row)
        table.add_row(
            name, f"{wall:.1f}", str(tokens[name]), f"{row['tokens_per_s']:.1f}", f"{row['speedup']:.2f}x",
            f"{same}/{args.replies}",
        )  # fmt: skip
    Console(width=100).print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "config": {**{k: v for k, v in vars(args).items() if k != "json"}, "adapter": adapter_name},
                    "rows": rows,
                    "cpus": os.cpu_count(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
