"""The demo's time budget: run `persona-tui demo` stage by stage and print wall and CPU time each.

    .venv/bin/python bench/demo.py DIR [--quick] [--json OUT] [--nice N]
        [--size KEY=N ...] [--padding-free on|off]

The budget (issue 12): the full demo <= 10 min wall on this 2-core machine when idle, the quick
demo (run by CI) <= 3 min. Each stage runs exactly as `run_demo` runs it (the same STAGES, the
same job workers). CPU seconds are this process's plus its reaped children's (every job's worker
is a child that the launcher reaps, and workers wait for their own children), so they count the
demo's own work and not the other processes on the machine; the load average at each stage's
start and end says how busy the machine was. A wall time well above the CPU time means the
demo waited for the CPU (other work) or slept; compare runs by CPU seconds when the load differs.

`--size` and `--padding-free` measure a demo that is not the product's: one sized to the budget,
to say what the budget would cost the evidence (docs/training.md, "The demo's time budget").
`--size train_steps=24 --size trait_samples=4` trains 24 steps and asks 4 replies per expression
prompt (32 per trait per model); KEY is any of the demo's sizes (evaluators/demo.py, FULL).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _wait_for_reaping(timeout: float = 60.0) -> None:
    """Job workers are reaped by `reap-<pid>` threads; their CPU time counts once they are."""
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t.name.startswith("reap-"):
            t.join(max(0.0, deadline - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--nice", type=int, default=None, help="niceness of the job workers [the product's default]")
    ap.add_argument("--size", action="append", default=[], metavar="KEY=N", help="change one of the demo's sizes")
    ap.add_argument("--padding-free", choices=["on", "off"], help="train without padding [the recipe's: off]")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from evaluators import demo as demo_stages
    from evaluators.demo import STAGES, DemoContext, _watch_quietly, sizes
    from sessions.demo import write_demo_session
    from sessions.store import SessionFile

    console = Console(stderr=True)
    table_of_sizes = demo_stages.QUICK if args.quick else demo_stages.FULL
    for item in args.size:
        key, _, value = item.partition("=")
        if key not in table_of_sizes or not value.isdigit():
            ap.error(f"--size {item}: KEY=N with KEY one of {', '.join(table_of_sizes)}")
        table_of_sizes[key] = int(value)
    path = write_demo_session(args.dir)
    if args.padding_free:
        sf = SessionFile.load(path)
        sf.session.runs[0].training.padding_free = args.padding_free == "on"
        sf.save()
    ctx = DemoContext(SessionFile.load(path), args.quick, console, follow=_watch_quietly)
    if args.nice is not None:
        ctx.nice = args.nice
    rows = []
    t_start, cpu_start, load_start = time.perf_counter(), _cpu(), os.getloadavg()
    for stage in STAGES:
        load0, t0, c0 = os.getloadavg(), time.perf_counter(), _cpu()
        stage.run(ctx)
        _wait_for_reaping()
        rows.append(
            {
                "stage": stage.name,
                "wall_s": round(time.perf_counter() - t0, 1),
                "cpu_s": round(_cpu() - c0, 1),
                "load_start": round(load0[0], 2),
                "load_end": round(os.getloadavg()[0], 2),
            }
        )
        console.print(f"  {stage.name}: {rows[-1]['wall_s']} s wall, {rows[-1]['cpu_s']} CPU-s")
    total = {
        "wall_s": round(time.perf_counter() - t_start, 1),
        "cpu_s": round(_cpu() - cpu_start, 1),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
    }
    budget = 180 if args.quick else 600
    table = Table(
        "stage",
        "wall s",
        "CPU s",
        "load 1-min start → end",
        title=f"persona-tui demo{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs",
    )
    for r in rows:
        table.add_row(
            r["stage"], f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['load_start']:.2f} → {r['load_end']:.2f}"
        )
    table.add_row(
        "total",
        f"{total['wall_s']:.1f}",
        f"{total['cpu_s']:.1f}",
        f"{total['load_start'][0]:.2f} → {total['load_end'][0]:.2f}",
    )
    Console().print(table)
    print(
        f"budget {budget} s wall when idle: {'within' if total['wall_s'] <= budget else 'over'} "
        f"({total['wall_s']:.0f} s wall, {total['cpu_s']:.0f} CPU-s on {os.cpu_count()} cores; "
        f"load average at the end {total['load_end'][0]:.2f} {total['load_end'][1]:.2f} {total['load_end'][2]:.2f})"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "sizes": sizes(ctx),
                    "padding_free": ctx.session_file.session.runs[0].training.padding_free,
                    "stages": rows,
                    "total": total,
                    "budget_s": budget,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
