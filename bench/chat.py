"""Benchmark of chat decoding on one exported model, printed as tables (not a test).

    .venv/bin/python bench/chat.py [--export JOB_DIR/export] [--tokens 128] [--prompts 4]

In one run, on the same export and the same chat-template prompts: time to first token and
greedy decode tokens/s of llama.cpp (F16, q8_0, q4_k_m GGUFs) against transformers' `generate`
on the merged model (float32, as exported); and the machine's memory bandwidth, measured here by
reading a 1 GiB array, over each model's bytes: the rate decoding could reach if it only had to
stream the weights once per token. llama.cpp's threads and n_batch are swept on q8_0 first and
the best setting is used for every GGUF; transformers runs with its better of 1 thread and all
cores (on a shared machine fewer threads can be faster: both wait at barriers). Without --export, a temporary export of the bundled
model with a random LoRA is made first (the tests' recipe), which takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

PROMPTS = [
    "Tell me a little about yourself.",
    "Write a short story about a lighthouse keeper.",
    "Explain how bees make honey.",
    "Describe your perfect weekend in detail.",
    "What would you pack for a week at sea, and why?",
    "Give me a recipe for a simple soup.",
]


def measure_bandwidth(gib: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """Read bandwidth in GB/s: one thread summing a `gib` GiB array, and one thread per core."""
    import numpy as np

    n = int(gib * 2**30) // 8
    arr = np.ones(n, dtype=np.float64)
    arr.sum()  # touch every page first
    best1 = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        arr.sum()
        best1 = max(best1, arr.nbytes / (time.perf_counter() - t0))
    cores = os.cpu_count() or 1
    parts = np.array_split(arr, cores)
    bestn = 0.0
    for _ in range(repeats):
        threads = [threading.Thread(target=p.sum) for p in parts]  # numpy releases the GIL in sum
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bestn = max(bestn, arr.nbytes / (time.perf_counter() - t0))
    del arr, parts
    return {"one_thread": best1 / 1e9, "all_cores": bestn / 1e9, "cores": cores}


def make_export(root: Path) -> Path:
    """A temporary export of the bundled model with a random LoRA (F16, q8_0, q4_k_m)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from export_fixtures import make_session, make_train_job
    from supervisor import jobs
    from trainers.export.job import create_export_job
    from trainers.worker import KINDS

    sf = make_session(root)
    train = make_train_job(sf)
    job_dir = create_export_job(
        sf.workspace,
        train_job=train.name,
        quants=["q8_0", "q4_k_m"],
        options={"adapter_gguf": False, "modelfile": False, "verify": False},
    )
    status = jobs.run_job_inline(job_dir, KINDS)
    if status.state != "finished":
        raise SystemExit(f"the export failed: {status.error}")
    return job_dir / "export"


def chat_prompts(tokenizer, n: int) -> list[str]:
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in (PROMPTS * 2)[:n]
    ]


def bench_llama(gguf: Path, prompts: list[str], tokens: int, threads: int, n_batch: int) -> dict[str, float]:
    """Greedy decoding of exactly `tokens` tokens per prompt (EOS ignored): TTFT and decode rate."""
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(
        model_path=str(gguf), n_ctx=512, n_batch=n_batch, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    load = time.perf_counter() - t0
    ttfts, rates = [], []
    try:
        for text in [prompts[0], *prompts]:  # the first prompt once more as a warm-up, not counted
            ids = llm.tokenize(text.encode(), add_bos=True, special=True)
            times = []
            t0 = time.perf_counter()
            for _ in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
                times.append(time.perf_counter())
                if len(times) >= tokens:
                    break
            ttfts.append(times[0] - t0)
            rates.append((len(times) - 1) / (times[-1] - times[0]))
    finally:
        llm.close()
    return {"load": load, "ttft": statistics.median(ttfts[1:]), "rate": statistics.median(rates[1:])}


def bench_transformers(merged: Path, prompts: list[str], tokens: int, threads: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    from trainers.export import quiet_transformers

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(merged))
        model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    load = time.perf_counter() - t0
    times: list[float] = []

    class Clock(StoppingCriteria):  # called once per generated token
        def __call__(self, input_ids, scores, **kw):
            times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    ttfts, rates = [], []
    with torch.inference_mode():
        for text in [prompts[0], *prompts]:
            ids = tok(text, add_special_tokens=False, return_tensors="pt")
            times.clear()
            t0 = time.perf_counter()
            model.generate(
                **ids,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([Clock()]),
                pad_token_id=tok.eos_token_id,
            )
            ttfts.append(times[0] - t0)
            rates.append((len(times) - 1) / (times[-1] - times[0]))
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "load": load,
        "ttft": statistics.median(ttfts[1:]),
        "rate": statistics.median(rates[1:]),
        "bytes": param_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="an export folder (jobs/<id>/export) with merged/ and GGUFs")
    parser.add_argument("--tokens", type=int, default=128, help="tokens decoded per prompt (default 128)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per engine (default 4)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the threads x n_batch sweep")
    args = parser.parse_args()
    console = Console(width=140)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]

    tmp = None
    export = args.export
    if export is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-chat-")
        console.print("making a temporary export of the bundled model (F16, q8_0, q4_k_m) ...")
        export = make_export(Path(tmp.name))
    from transformers import AutoTokenizer

    prompts = chat_prompts(AutoTokenizer.from_pretrained(str(export / "merged")), args.prompts)
    ggufs = {t: export / f"model-{t}.gguf" for t in ("f16", "q8_0", "q4_k_m") if (export / f"model-{t}.gguf").is_file()}

    bw = measure_bandwidth()
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores, load average {load:.1f} at start; "
        f"memory read bandwidth {bw['one_thread']:.1f} GB/s (1 thread), {bw['all_cores']:.1f} GB/s ({cores} threads), "
        f"1 GiB array, best of 5"
    )
    bandwidth = max(bw["one_thread"], bw["all_cores"]) * 1e9

    best = {"threads": cores, "n_batch": 512}
    if not args.no_sweep and "q8_0" in ggufs:
        sweep = Table(title=f"llama.cpp q8_0 settings ({args.tokens} tokens x {len(prompts)} prompts, greedy)")
        for col in ("threads", "n_batch", "TTFT ms", "decode tok/s"):
            sweep.add_column(col, justify="right")
        top = 0.0
        for threads in sorted({1, max(1, cores // 2), cores}):
            for n_batch in (64, 512):
                r = bench_llama(ggufs["q8_0"], prompts, args.tokens, threads, n_batch)
                sweep.add_row(str(threads), str(n_batch), f"{r['ttft'] * 1000:.0f}", f"{r['rate']:.1f}")
                if r["rate"] > top:
                    top, best = r["rate"], {"threads": threads, "n_batch": n_batch}
        console.print(sweep)
        console.print(f"using threads={best['threads']} n_batch={best['n_batch']} for every GGUF")

    rows = []
    # transformers gets the same chance: its best thread count of 1 and all cores.
    hf_runs = {t: bench_transformers(export / "merged", prompts, args.tokens, t) for t in sorted({1, cores})}
    hf_threads, hf = max(hf_runs.items(), key=lambda kv: kv[1]["rate"])
    console.print(
        "transformers decode tok/s by threads: "
        + ", ".join(f"{t}: {r['rate']:.1f}" for t, r in hf_runs.items())
        + f"; using {hf_threads}"
    )
    rows.append(("transformers generate (merged, fp32)", hf["bytes"], hf))
    for t, path in ggufs.items():
        rows.append((f"llama.cpp {t}", path.stat().st_size, bench_llama(path, prompts, args.tokens, **best)))

    table = Table(title=f"decode on one export: {args.tokens} tokens x {len(prompts)} prompts, greedy, medians")
    for col in (
        "engine",
        "model MB",
        "load s",
        "TTFT ms",
        "decode tok/s",
        "bandwidth bound tok/s",
        "of bound",
        "x transformers",
    ):
        table.add_column(col, justify="right" if col != "engine" else "left")
    for name, nbytes, r in rows:
        bound = bandwidth / nbytes
        table.add_row(
            name,
            f"{nbytes / 1e6:.0f}",
            f"{r['load']:.2f}",
            f"{r['ttft'] * 1000:.0f}",
            f"{r['rate']:.1f}",
            f"{bound:.0f}",
            f"{r['rate'] / bound:.0%}",
            f"{r['rate'] / hf['rate']:.2f}x",
        )
    console.print(table)
    q8 = next((r for name, _, r in rows if name.endswith("q8_0")), None)
    if q8:
        ratio = q8["rate"] / hf["rate"]
        console.print(
            f"goal llama.cpp q8_0 >= 3x transformers' decode rate: {ratio:.2f}x "
            f"({'met' if ratio >= 3 else 'not met'}); load average now {os.getloadavg()[0]:.1f}"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
