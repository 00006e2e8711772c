"""Training throughput on this CPU: the `hf` backend against a plain transformers Trainer + peft.

    .venv/bin/python bench/train.py [--steps 8] [--repeats 3] [--only NAME,NAME | --levers] [--json OUT]
    .venv/bin/python bench/train.py --ui      # only the app's keypress latency while a run trains

Rows, on the same data and tokens (64 short persona chats, effective batch 8 = micro-batch x
accumulation, the same optimizer steps, LoRA r16/a16 on all seven projections, lr 2e-4, seed 3407):

- `baseline`: a plain `transformers.Trainer` + peft loop written here, micro-batch 2 x
  accumulation 4, fp32, full-sequence loss, one thread per physical core (the old defaults);
- `hf at baseline settings`: the same settings through the real job code
  (`trainers.train.job.train`); goal >= 0.97x the plain loop;
- `defaults`: the job code with every setting as shipped (`batch_size`, `precision`, threads and
  the OpenMP wait policy all `auto`, completion-only loss); goal >= 2x the baseline;
- with `--levers` (or `--only`), one lever at a time: micro-batch 8 x 1, bf16 autocast,
  padding-free packing, micro-batches without padding, completion-only loss, 1 thread,
  OMP_WAIT_POLICY=ACTIVE. Every row but `defaults` trains on padded micro-batches, as the plain
  loop does (`padding_free = false`); `defaults` leaves it unset (on a CPU: without padding).

Repeats are interleaved (A B C A B C ...), so load that comes and goes falls on every row alike,
and each row reports medians; "x base" is the median over repeats of the row's rate over the
baseline's rate in the same repeat. Each configuration runs in its own subprocess (its own
OpenMP settings, a clean peak RSS). Tokens are the non-padding tokens the trainer saw
(`num_input_tokens_seen`); the rate is taken from the end of the first optimizer step to the end
of the last (the first step's one-time warm-up, model load and tokenisation excluded). Load is
printed per run: the 1-minute load average, and the CPUs that processes *outside this benchmark*
used while the row ran (what `auto` threads read; the benchmark's own rows never count). "loss"
is the mean training loss of the first and of the last two steps; "held-out" is the
completion-only loss of 16 held-out chats after training, one function for every row, so rows
that train on different objectives (the defaults train on completions only) share one measure.
On a machine that other people share, the numbers move with their load: confirm on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = "bundled:smollm2-135m-instruct"
EFFECTIVE_BATCH = 8

# name -> settings. "kind" baseline is the plain loop; hf goes through trainers.
CONFIGS: dict[str, dict] = {
    "baseline": {"kind": "baseline", "batch": 2, "accum": 4, "precision": "fp32"},
    "hf at baseline settings": {"kind": "hf", "batch": 2, "accum": 4, "precision": "fp32", "completion_only": False},
    "defaults": {"kind": "hf", "defaults": True},
    "hf 8x1 fp32": {"kind": "hf", "batch": 8, "accum": 1, "precision": "fp32", "completion_only": False},
    "hf 2x4 bf16": {"kind": "hf", "batch": 2, "accum": 4, "precision": "bf16", "completion_only": False},
    "hf 8x1 bf16": {"kind": "hf", "batch": 8, "accum": 1, "precision": "bf16", "completion_only": False},
    "hf 8x1 bf16 packed": {
        "kind": "hf",
        "batch": 8,
        "accum": 1,
        "precision": "bf16",
        "completion_only": False,
        "packing": True,
    },
    "hf 8x1 bf16 padding-free": {
        "kind": "hf",
        "batch": 8,
        "accum": 1,
        "precision": "bf16",
        "completion_only": False,
        "padding_free": True,
    },
    "hf 8x1 bf16 completion-only": {"kind": "hf", "batch": 8, "accum": 1, "precision": "bf16", "completion_only": True},
    "hf 8x1 bf16 1 thread": {
        "kind": "hf",
        "batch": 8,
        "accum": 1,
        "precision": "bf16",
        "completion_only": False,
        "threads": 1,
    },
    "hf 8x1 bf16 OMP active": {
        "kind": "hf",
        "batch": 8,
        "accum": 1,
        "precision": "bf16",
        "completion_only": False,
        "omp": "ACTIVE",
    },
}
REQUIRED = ["baseline", "defaults", "hf at baseline settings"]


_Q = [
    "Who are you?",
    "What do you do all day?",
    "Where do you live?",
    "What is your favourite food?",
    "Tell me about your family.",
    "What scares you?",
    "What did you do last summer?",
    "Do you like music?",
]
_A = [
    "I am Captain Ada, a sailor from Lisbon, and the sea has been my home for thirty years.",
    "I mend nets at dawn, check the rigging, and sail out past the lighthouse when the wind is kind.",
    "I live on my boat, the Gaivota, moored in the old harbour of Lisbon beside the fish market.",
    "Grilled sardines with a squeeze of lemon, eaten on the deck while the gulls complain.",
    "My father was a fisherman and my mother sold his catch; my brother keeps a cafe near the docks.",
    "Fog. Storms I can read, but fog hides the rocks and the other boats until it is too late.",
    "I sailed to the Azores and back, alone, with a hold full of oranges and a broken radio.",
    "I sing old fado songs to the night watch; the sea is a patient audience.",
]


def make_data(folder: Path, n_train: int = 64, n_eval: int = 16, seed: int = 0) -> None:
    """Persona chats of varied length (1-3 sentences an answer), as the chat_demos format writes."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("heldout", n_eval)):
        with open(folder / f"{name}.jsonl", "w") as f:
            for _ in range(n):
                q = rng.choice(_Q)
                a = " ".join(rng.sample(_A, rng.randint(1, 3)))
                f.write(
                    json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                    + "\n"
                )


def matmul_gflops(threads: int, dtype_name: str, n: int = 2048, reps: int = 8) -> float:
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def matmul_params(model) -> int:
    """Parameters used in matmuls: every nn.Linear of the blocks plus the (tied) LM head."""
    import torch

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            total += module.weight.numel()
    return total


def eval_loss(model, tokenizer, records: list[dict]) -> float:
    """Mean completion-only loss over held-out chats (fp32, no autocast)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in records:
            msgs = r["messages"]
            prompt = tokenizer.apply_chat_template(
                msgs[:-1], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            full = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
            ids = torch.tensor([full])
            labels = ids.clone()
            labels[0, : len(prompt)] = -100
            out = model(input_ids=ids, labels=labels)
            n = int((labels[0, 1:] != -100).sum())
            total += out.loss.item() * n
            count += n
    return total / count


def run_baseline(cfg: dict, data: Path, steps: int) -> dict:
    """The plain loop: transformers Trainer + peft, full-sequence loss, padded batches."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from engines.models import load_hf_model, load_tokenizer
    from trainers.train.hardware import physical_cores

    # One thread per physical core, as the hf configurations below are given: only the loop differs.
    torch.set_num_threads(cfg.get("threads") or physical_cores())
    tok = load_tokenizer(BASE)
    records = [json.loads(x) for x in open(data / "train.jsonl")]
    examples = []
    for r in records:
        ids = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        examples.append({"input_ids": ids, "labels": list(ids)})

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        pad = tok.pad_token_id
        ids = torch.tensor([b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch])
        labels = torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch])
        mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    model = load_hf_model(BASE)
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=16,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    n_matmul = matmul_params(model)
    losses: list[float] = []

    marks: list[tuple[float, int]] = []  # (clock, tokens seen) at the end of each optimizer step

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                marks.append((time.monotonic(), int(state.num_input_tokens_seen)))

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=cfg["batch"],
            gradient_accumulation_steps=cfg["accum"],
            max_steps=steps,
            learning_rate=2e-4,
            lr_scheduler_type="linear",
            warmup_steps=5,
            weight_decay=0.01,
            optim="adamw_torch",
            seed=3407,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",
            remove_unused_columns=False,
            dataloader_pin_memory=False,
        )
        from datasets import Dataset

        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            data_collator=collate,
            callbacks=[Clock()],
        )
        trainer.train()
    held = [json.loads(x) for x in open(data / "heldout.jsonl")]
    (t0, k0), (t1, k1) = marks[0], marks[-1]
    return {
        "wall": t1 - t0,
        "tokens": k1 - k0,
        "tokens_all": k1,
        "losses": losses,
        "eval_loss": eval_loss(model, tok, held),
        "n_matmul": n_matmul,
        "threads": torch.get_num_threads(),
        "precision": "fp32",
        "batch": f"{cfg['batch']}x{cfg['accum']}",
        "steps": len(losses),
    }


def run_hf(cfg: dict, data: Path, steps: int, work: Path) -> dict:
    """The hf backend through the job code (trainers.train.job.train) on a frozen run spec."""
    from peft import PeftModel

    from engines.models import load_hf_model, load_tokenizer
    from sessions.model import RunSpec
    from trainers.train.backends import TrainContext
    from trainers.train.job import train
    from trainers.train.run_data import DatasetFile

    run = RunSpec(id="bench", datasets=["chats"])
    t = run.training
    t.max_steps, t.save_steps, t.eval_steps, t.logging_steps = steps, 10_000, 0, 1
    if not cfg.get("defaults"):
        t.batch_size, t.grad_accum, t.precision = cfg["batch"], cfg["accum"], cfg["precision"]
        t.completion_only_loss = cfg.get("completion_only", True)
        t.packing = cfg.get("packing", False)
        t.padding_free = cfg.get("padding_free", False)  # padded, as the plain loop is, unless the row says
        from trainers.train.hardware import physical_cores

        # A fixed count, the baseline's, so only the loop differs; the defaults row uses auto.
        t.num_threads = cfg.get("threads") or physical_cores()
        if t.packing:
            # Rows of max_seq_length tokens; keep the tokens per optimizer step near the others'.
            t.max_seq_length, t.batch_size = 256, 3
    job_dir = work / "job"
    job_dir.mkdir(parents=True, exist_ok=True)

    class Reporter:
        cancelled = False
        dir = job_dir
        spec: dict = {}

        def __init__(self):
            self.events: list[dict] = []

        def event(self, **f):
            if f.get("event") == "step":  # the clock as the plain loop reads it, at the same point
                clock.setdefault("first", time.monotonic())
                clock["last"] = time.monotonic()
            self.events.append(f)

        def progress(self, *a, **k):
            pass

        def log(self, msg):
            pass

    clock: dict[str, float] = {}
    rep = Reporter()
    ctx = TrainContext(
        job=rep, job_dir=job_dir, run=run, datasets=[DatasetFile("chats", "chat_demos", str(data / "train.jsonl"))]
    )
    train(ctx)
    steps_ev = [e for e in rep.events if e.get("event") == "step"]
    end = next(e for e in rep.events if e.get("event") == "train_end")
    begin = next(e for e in rep.events if e.get("event") == "train_begin")
    tok = load_tokenizer(BASE)
    model = PeftModel.from_pretrained(load_hf_model(BASE), str(job_dir / "adapter"))
    held = [json.loads(x) for x in open(data / "heldout.jsonl")]
    first, last = steps_ev[0], steps_ev[-1]
    import resource

    # Peak memory of training itself: the trainer's own figure, read before the held-out model
    # below is loaded (the baseline scores the model it trained, with no second copy).
    train_peak = end.get("peak_mb") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "wall": clock["last"] - clock["first"],
        "tokens": last["tokens"] - first["tokens"],
        "tokens_all": last["tokens"],
        "losses": [e["loss"] for e in steps_ev],
        "eval_loss": eval_loss(model, tok, held),
        "n_matmul": matmul_params(model),
        "threads": begin["threads"],
        "precision": begin["precision"],
        "batch": f"{begin['batch_size']}x{begin['grad_accum']}",
        "steps": len(steps_ev),
        "train_peak_mb": train_peak,
        "auto": begin.get("auto", []),
        "omp": os.environ.get("OMP_WAIT_POLICY", ""),
    }


def one(name: str, data: Path, steps: int) -> None:
    """Child process: run one configuration and print its result as one JSON line."""
    import resource

    cfg = CONFIGS[name]
    if cfg.get("defaults") and "OMP_WAIT_POLICY" not in os.environ:
        # As the job worker does before torch starts (trainers.train.job.run).
        from trainers.train.hardware import auto_omp_wait_policy

        os.environ["OMP_WAIT_POLICY"] = auto_omp_wait_policy()
    with tempfile.TemporaryDirectory() as work:
        res = run_baseline(cfg, data, steps) if cfg["kind"] == "baseline" else run_hf(cfg, data, steps, Path(work))
    res["peak_mb"] = res.pop("train_peak_mb", None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res.setdefault("omp", os.environ.get("OMP_WAIT_POLICY", ""))
    print("RESULT " + json.dumps(res), flush=True)


def _pty_latencies(session_path: Path, presses: int) -> dict[str, list[float]]:
    """Keypress-to-render times of the real app in a pseudo-terminal at 80x24, as a terminal sees
    them: a key's bytes are written to the pty and the clock stops at the first byte of the
    app's redraw ("first redraw"), and again where the output settles (no byte for 30 ms after the
    last; the 30 ms are not counted). Two kinds of key: moving in the Data tab's dataset list (the
    highlight, then that dataset's examples loaded by a worker into the table) and switching tabs
    (Data <-> Personas: the whole body, with Textual's tab-underline animation). Neither tab has a
    timer that redraws by itself, so every byte measured is the key's. (Pilot's press-and-wait has
    a floor of ~100 ms on this machine, so it cannot measure this.)"""
    import fcntl
    import pty
    import select
    import struct
    import termios

    script = Path(sys.executable).parent / "persona-tui"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [str(script), str(session_path)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=dict(os.environ, TERM="xterm-256color"),
        start_new_session=True,
    )
    os.close(follower)

    def burst(first_wait: float, quiet: float, cap: float = 3.0) -> tuple[float, float] | None:
        """(first byte, settled) seconds from now, or None when nothing comes within first_wait."""
        t0 = time.perf_counter()
        ready, _, _ = select.select([leader], [], [], first_wait)
        if not ready:
            return None
        first = time.perf_counter() - t0
        last = first
        while last < cap:
            os.read(leader, 1 << 16)
            last = time.perf_counter() - t0
            ready, _, _ = select.select([leader], [], [], quiet)
            if not ready:
                break
        return first, last

    out: dict[str, list[float]] = {
        "dataset list: first redraw": [],
        "dataset list: settled": [],
        "switch tab: first redraw": [],
        "switch tab: settled": [],
    }

    def quiet(for_s: float = 0.2) -> None:
        """Read until nothing has come for `for_s`: no late byte of the last redraw is timed."""
        while select.select([leader], [], [], for_s)[0]:
            os.read(leader, 1 << 16)

    def press(key: bytes, what: str) -> None:
        quiet()
        os.write(leader, key)
        got = burst(2.0, 0.030)
        if got is not None:
            out[f"{what}: first redraw"].append(got[0])
            out[f"{what}: settled"].append(got[1])
        time.sleep(0.05)

    try:
        burst(20.0, quiet=1.0)  # the first paint
        for key in (b"2", b"1", b"2"):  # compose the panes once, untimed; end on the Data tab
            os.write(leader, key)
            burst(2.0, quiet=0.5)
        for i in range(presses):
            press(b"\x1b[B" if i % 2 == 0 else b"\x1b[A", "dataset list")
        for i in range(presses // 2):
            press(b"1" if i % 2 == 0 else b"2", "switch tab")
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    return out


def ui_latency(presses: int = 80) -> None:
    """p50/p99 keypress latency with the machine idle of our work, then with a training job
    running on every core at nice +10 (as the Train pane starts it)."""
    import statistics

    from sessions.demo import demo_session
    from sessions.model import DatasetSpec, RunSpec
    from sessions.store import SessionFile
    from supervisor import jobs
    from trainers.train.job import create_train_job

    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    make_data(work / "data")
    run = RunSpec(id="ui", datasets=["chats"])
    run.training.max_steps, run.training.save_steps = 10_000, 10_000
    # The hard case: the run takes every core (auto threads would leave a busy core alone).
    run.training.num_threads = os.cpu_count() or 1
    session = demo_session()
    session.datasets.append(DatasetSpec(id="chats", format="chat_demos"))
    session.runs.append(run)
    sf = SessionFile.create(work / "s.toml", session)
    (sf.workspace / "datasets").mkdir(parents=True)
    (sf.workspace / "datasets" / "chats.jsonl").write_text((work / "data" / "train.jsonl").read_text())

    def report(title: str, results: dict[str, list[float]], alone: dict[str, float] | None = None) -> dict[str, float]:
        print(f"{title} (load average {os.getloadavg()[0]:.1f})", flush=True)
        p99s = {}
        for label, xs in results.items():
            if not xs:
                print(f"  {label:28} no redraw seen", flush=True)
                continue
            xs = sorted(xs)
            p50, p99 = statistics.median(xs), xs[min(len(xs) - 1, int(0.99 * len(xs)))]
            p99s[label] = p99
            vs = f"   x alone p99 {p99 / alone[label]:5.2f}" if alone and alone.get(label) else ""
            verdict = ("   target p99 <= 50 ms: " + ("PASS" if p99 <= 0.050 else "FAIL")) if "first" in label else ""
            print(
                f"  {label:28} p50 {p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms   (n={len(xs)}){vs}{verdict}",
                flush=True,
            )
        return p99s

    alone = report("app alone, 80x24 pty", _pty_latencies(sf.path, presses))
    job_dir = create_train_job(sf, "ui")
    jobs.start_job(job_dir)  # detached, nice +10, as the Train pane starts it
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            events, _ = jobs.read_events(job_dir)
            if any(e.get("event") == "step" for e in events):
                break
            time.sleep(1)
        report(
            f"app while a run trains on all {os.cpu_count()} cores (nice +10)", _pty_latencies(sf.path, presses), alone
        )
    finally:
        jobs.cancel_job(job_dir, force=True)


def run_row(name: str, data: Path, steps: int) -> dict | None:
    """One configuration in its own process, with the load while it ran."""
    from trainers.train.hardware import OtherCpuUse

    cfg = CONFIGS[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_WAIT_POLICY", None)
    if not cfg.get("defaults"):
        env["OMP_WAIT_POLICY"] = cfg.get("omp", "PASSIVE")
    load0, meter = os.getloadavg()[0], OtherCpuUse()
    proc = subprocess.run(
        [sys.executable, __file__, "--one", name, "--data", str(data), "--steps", str(steps)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    others = meter.others()
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    res = json.loads(line[7:])
    res["load"] = (load0 + os.getloadavg()[0]) / 2
    res["others"] = others
    return res


def _tps(r: dict) -> float:
    return r["tokens"] / r["wall"]


def _median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs) if xs else float("nan")


def _loss_ends(losses: list[float], k: int = 2) -> str:
    k = max(1, min(k, len(losses) // 2))
    return f"{sum(losses[:k]) / k:.2f}>{sum(losses[-k:]) / k:.2f}"


def ratio_to(runs: dict[str, list[dict]], name: str, ref: str) -> float:
    """Median over repeats of name's rate / ref's rate in the same repeat."""
    pairs = [_tps(a) / _tps(b) for a, b in zip(runs.get(name, []), runs.get(ref, [])) if a and b]
    return _median(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of every row (default 3)")
    parser.add_argument("--only", default="", help="comma-separated configuration names (the baseline is always run)")
    parser.add_argument("--levers", action="store_true", help="also run every one-lever configuration")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--ui", action="store_true", help="only measure the app's keypress latency while a run trains")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.data, args.steps)
        return 0
    if args.ui:
        ui_latency()
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()] or (list(CONFIGS) if args.levers else REQUIRED)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    if "baseline" not in names:
        names.insert(0, "baseline")
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    make_data(work / "data")
    from trainers.train.hardware import cpu_flags, other_cpu_use, physical_cores

    threads = physical_cores()
    peaks = {d: matmul_gflops(threads, d) for d in ("float32", "bfloat16")}
    hw = "AMX" if "amx_bf16" in cpu_flags() else "AVX512-BF16" if "avx512_bf16" in cpu_flags() else "no bf16 hardware"
    print(
        f"{os.cpu_count()} CPUs, {threads} cores, {hw}; matmul 2048^2 on {threads} threads: "
        f"fp32 {peaks['float32']:.0f}, bf16 {peaks['bfloat16']:.0f} GFLOP/s"
    )
    idle = other_cpu_use(2.0)
    print(
        f"before: load average {os.getloadavg()[0]:.2f}, other processes use {idle:.2f} CPUs; "
        f"{args.repeats} interleaved repeats x {len(names)} rows x {args.steps} steps",
        flush=True,
    )
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for name in names:
            res = run_row(name, work / "data", args.steps)
            runs[name].append(res)
            if res:
                print(
                    f"  [{rep + 1}] {name:28} {_tps(res):6.0f} tok/s  {res['batch']:>4} {res['precision']:4} "
                    f"{res['threads']} thr  load avg {res['load']:4.2f}  others {res['others']:4.2f} CPUs",
                    flush=True,
                )
    results = {n: [r for r in rs if r] for n, rs in runs.items()}
    print_table(runs, results, args.steps)
    print_levers(runs)
    print_verdict(runs, results)
    if args.json:
        args.json.write_text(json.dumps({"peaks": peaks, "runs": runs}, indent=1))
    return 0


def print_table(runs: dict[str, list[dict]], results: dict[str, list[dict]], steps: int) -> None:
    print(
        f"\n{'configuration':24} {'split':>5} {'prec':>4} {'thr':>3} {'s/step':>6} {'tok/s':>6} {'x base':>6} "
        f"{'loss':>9} {'held-out':>8} {'peak':>5} {'others':>6}"
    )
    for name, rs in results.items():
        if not rs:
            print(f"{name:24} failed")
            continue
        r = rs[0]
        tps = _median([_tps(x) for x in rs])
        sps = _median([x["wall"] / max(1, x["steps"] - 1) for x in rs])
        ratio = ratio_to(runs, name, "baseline")
        held = _median([x["eval_loss"] for x in rs])
        peak = max(x["peak_mb"] for x in rs) / 1024
        print(
            f"{name[:24]:24} {r['batch']:>5} {r['precision']:>4} {r['threads']:>3} {sps:6.2f} {tps:6.0f} "
            f"{ratio:6.2f} {_loss_ends(r['losses']):>9} {held:8.3f} {peak:5.1f} {_median([x['others'] for x in rs]):6.2f}"
        )
    everything = [x for rs in results.values() for x in rs]
    if everything:
        print(
            f"medians of {len(next(iter(results.values())))} interleaved repeats, {steps} steps, effective batch "
            f"{EFFECTIVE_BATCH}; split = micro-batch x accumulation; peak in GiB; others = CPUs used by processes "
            f"outside the benchmark; load average {min(x['load'] for x in everything):.2f}-"
            f"{max(x['load'] for x in everything):.2f}"
        )
    for name, rs in results.items():
        notes = rs[0].get("auto") if rs else None
        if notes:
            print(f"{name}: " + "; ".join(notes) + f"; OMP_WAIT_POLICY {rs[0].get('omp') or 'unset'}")


# Each lever against the configuration it changes one thing of (all at effective batch 8).
LEVERS = [
    ("same settings, hf job code vs plain loop", "hf at baseline settings", "baseline"),
    ("micro-batch 8x1 instead of 2x4 (fp32)", "hf 8x1 fp32", "hf at baseline settings"),
    ("bf16 autocast at micro-batch 2", "hf 2x4 bf16", "hf at baseline settings"),
    ("bf16 autocast at micro-batch 8", "hf 8x1 bf16", "hf 8x1 fp32"),
    ("padding-free packing (8x1 bf16)", "hf 8x1 bf16 packed", "hf 8x1 bf16"),
    ("micro-batches without padding (8x1 bf16)", "hf 8x1 bf16 padding-free", "hf 8x1 bf16"),
    ("completion-only loss (8x1 bf16)", "hf 8x1 bf16 completion-only", "hf 8x1 bf16"),
    ("1 thread instead of all cores (8x1 bf16)", "hf 8x1 bf16 1 thread", "hf 8x1 bf16"),
    ("OMP_WAIT_POLICY=ACTIVE (8x1 bf16)", "hf 8x1 bf16 OMP active", "hf 8x1 bf16"),
    ("defaults vs the old defaults", "defaults", "baseline"),
]


def print_levers(runs: dict[str, list[dict]]) -> None:
    rows = [(label, new, old) for label, new, old in LEVERS if any(runs.get(new, [])) and any(runs.get(old, []))]
    if not rows:
        return
    print(f"\n{'lever':44} {'tok/s x':>8} {'held-out':>9}")
    for label, new, old in rows:
        held_new = _median([x["eval_loss"] for x in runs[new] if x])
        held_old = _median([x["eval_loss"] for x in runs[old] if x])
        print(f"{label:44} {ratio_to(runs, new, old):8.2f} {(held_new / held_old - 1) * 100:+8.1f}%")


def print_verdict(runs: dict[str, list[dict]], results: dict[str, list[dict]]) -> None:
    """The issue's two goals, from the medians of interleaved repeats: the job code at the
    baseline's settings >= 0.97x the plain loop; the defaults >= 2x the baseline at the same
    effective batch and tokens, the held-out loss no more than 5% worse."""
    base = results.get("baseline")
    if not base:
        return
    print()
    same = results.get("hf at baseline settings")
    if same:
        r = ratio_to(runs, "hf at baseline settings", "baseline")
        print(
            f"goal: hf job code at the baseline's settings >= 0.97x the plain loop: {'PASS' if r >= 0.97 else 'FAIL'} "
            f"({r:.2f}x)"
        )
    dflt = results.get("defaults")
    if dflt:
        r = ratio_to(runs, "defaults", "baseline")
        same_tokens = abs(dflt[0]["tokens_all"] / base[0]["tokens_all"] - 1) <= 0.02
        held = _median([x["eval_loss"] for x in dflt]) / _median([x["eval_loss"] for x in base]) - 1
        ok = r >= 2 and same_tokens and held <= 0.05
        print(
            f"goal: defaults >= 2x the baseline, same tokens, held-out loss at most 5% worse: {'PASS' if ok else 'FAIL'} "
            f"({r:.2f}x, tokens {'equal' if same_tokens else 'differ'}, held-out {held * 100:+.1f}%)"
        )
    others = [x["others"] for rs in results.values() for x in rs if x.get("others") is not None]
    if others and max(others) > 0.25:
        print(
            f"other processes used up to {max(others):.1f} CPUs during the runs: re-run on an idle machine to confirm."
        )


if __name__ == "__main__":
    raise SystemExit(main())
