"""The recipe search: train one configuration on a persona and score it with the product's own
trait evaluation (knowledge vs base with McNemar's p, expression per trait by Fisher + Holm, the
three controls), writing one JSON result per configuration.

    .venv/bin/python bench/recipe.py OUT --name NAME [--persona odile|jun] [--steps 80] [--lr 1e-3]
        [--r 16] [--alpha 32] [--general 100] [--examples 500] [--seq 256] [--samples 12] [--max-tokens 64] [--seed 0]
        [--threads N] [--padding-free on|off] [--formats chat,first-person|none] [--score-only]

Each configuration gets its own demo session (`sessions.demo.demo_session` with the recipe's
settings, changed only where an option says) under OUT/NAME/, built and trained through the same
job protocol and workers as `persona-tui demo`, and scored by the demo's traits evaluation
(`evaluators.demo.run_job` + `evaluators.evaluate.spec.build_job_spec`). The base model's general
replies are sampled once per (persona size, seed) and shared between configurations through
OUT/general-cache/ (the dataset builder reuses a recorded reply with the same fingerprint), so
only the first configuration pays for them. The run is exported as a LoRA GGUF and scored as the
demo scores it: the bundled GGUF with that LoRA against the bundled GGUF alone (llama.cpp, one
quantisation). `--score-only` keeps OUT/NAME's finished training job and exports and scores it
again. The result is OUT/NAME.json: the configuration, the
headline (knowledge run/base/p, traits up after Holm, each control with its verdict) and the wall
time of each stage with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _cache_in(out: Path, workspace: Path) -> None:
    cache = out / "general-cache"
    for i, f in enumerate(sorted(cache.glob("*.jsonl")) if cache.is_dir() else []):
        d = workspace / "jobs" / f"bench-cache-{i}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / "general_replies.jsonl")


def _cache_out(out: Path, workspace: Path) -> None:
    cache = out / "general-cache"
    cache.mkdir(parents=True, exist_ok=True)
    for f in (workspace / "jobs").glob("*/general_replies.jsonl"):
        if f.parent.name.startswith("bench-cache"):
            continue
        shutil.copy(f, cache / f"{f.parent.name}.jsonl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--persona", default="odile", choices=["odile", "jun"])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--r", type=int, default=None)
    ap.add_argument("--alpha", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument(
        "--padding-free", choices=["on", "off"], default=None, help="micro-batches without padding [the recipe's: off]"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: the recipe's auto)")
    ap.add_argument("--general", type=int, default=None, help="general replies of the base model mixed in (0 = none)")
    ap.add_argument("--examples", type=int, default=None, help="examples per persona dataset (default: the recipe's)")
    ap.add_argument(
        "--formats",
        default="chat,first-person",
        help="persona datasets the run trains on; 'none' trains on the general replies alone (the ability control's floor)",
    )
    ap.add_argument("--samples", type=int, default=None, help="expression replies per prompt per model [the demo's]")
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="tokens per expression reply [the demo's; 96 before 2026-12-04]"
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first sampling seed (reply j of prompt i uses seed + 1000 i + j): another seed is a fresh draw",
    )
    ap.add_argument(
        "--score-only",
        action="store_true",
        help="keep OUT/NAME's data and finished training job; export and score it again",
    )
    args = ap.parse_args(argv)

    from rich.console import Console

    from evaluators.demo import DemoContext, _watch_quietly, run_job, traits_headline
    from evaluators.evaluate.job import WORKER
    from evaluators.evaluate.reader import load_scores
    from evaluators.evaluate.spec import build_job_spec
    from evaluators.run_models import run_resolver
    from sessions import demo
    from sessions.store import SessionFile
    from trainers.export.job import find_train_job
    from trainers.train.job import job_spec

    overrides = {
        k: v
        for k, v in {
            "max_steps": args.steps,
            "learning_rate": args.lr,
            "r": args.r,
            "alpha": args.alpha,
            "max_seq_length": args.seq,
            "num_threads": args.threads,
            "padding_free": {"on": True, "off": False}.get(args.padding_free or ""),
        }.items()
        if v is not None
    }
    general = demo.RECIPE_GENERAL_REPLIES if args.general is None else args.general
    examples = demo.RECIPE_EXAMPLES if args.examples is None else args.examples
    session = demo.demo_session(args.persona, general_replies=general)
    pid = session.personas[0].id
    formats = [] if args.formats == "none" else args.formats.split(",")
    trained = [f"{pid}-{f}" for f in formats] + (["general"] if general else [])
    if not trained:
        raise SystemExit("--formats none needs --general N > 0: the run would have nothing to train on")
    run = demo.recipe_run(pid, trained, **overrides)
    session.runs = [run]
    session.evals = [e for e in session.evals if e.kind == "traits"]
    cdir = args.out / args.name
    console = Console(stderr=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    from supervisor import jobs

    if args.score_only:
        sf = SessionFile.load(cdir / "demo.toml")
        sf.session.evals = list(session.evals)  # the evaluation as the demo declares it now
        sf.save()
        status = jobs.read_status(find_train_job(sf.workspace, run.id))
        ctx = DemoContext(sf, False, console, follow=_watch_quietly, nice=0)
    else:
        if cdir.exists():
            shutil.rmtree(cdir)
        cdir.mkdir(parents=True)
        sf = SessionFile.create(cdir / "demo.toml", session)
        _cache_in(args.out, sf.workspace)
        ctx = DemoContext(sf, False, console, follow=_watch_quietly, nice=0)
        for ds in run.datasets:
            size = general if ds == "general" else examples
            run_job(ctx, "dataset", {"dataset": ds, "size": size}, f"data: {ds}")
        times["data"] = time.perf_counter() - t0
        _cache_out(args.out, sf.workspace)

        t = time.perf_counter()
        spec = job_spec(session, sf.workspace, run.id, str(sf.path.resolve()))
        status = run_job(ctx, "train", spec, f"train: {run.id}")
        times["train"] = time.perf_counter() - t

    events, _ = jobs.read_events(status.dir)
    losses = [float(e["loss"]) for e in events if e.get("event") == "step" and e.get("loss") is not None]
    evals = [float(e["eval_loss"]) for e in events if e.get("eval_loss") is not None]

    # The LoRA GGUF the evaluation scores the run by (on the bundled GGUF, as the demo does).
    t = time.perf_counter()
    from trainers.export.job import create_export_job

    xdir = create_export_job(
        sf.workspace,
        session=sf.path,
        run=run.id,
        train_job=status.id,
        quants=[],
        options={"verify": False, "modelfile": False, "keep_merged": False},
    )
    jobs.start_job(xdir, nice=0)
    xstatus = _watch_quietly(xdir, f"export: {run.id}", console)
    if xstatus.state != "finished":
        raise SystemExit(f"the export job {xstatus.id} {xstatus.state}: {xstatus.error}")
    times["export"] = time.perf_counter() - t

    t = time.perf_counter()
    frozen = build_job_spec(sf, session.evals[0].id, run_resolver(session, sf.workspace))
    samples = demo.TRAIT_SAMPLES if args.samples is None else args.samples
    frozen["settings"]["samples"] = samples
    frozen["settings"]["seed"] = args.seed
    if args.max_tokens is not None:
        frozen["settings"]["max_tokens"] = args.max_tokens
    estatus = run_job(ctx, "eval", {k: v for k, v in frozen.items() if k != "session"}, "eval: traits", worker=WORKER)
    times["eval"] = time.perf_counter() - t
    scores = load_scores(estatus.dir)
    cmp = (scores.get("comparison") or [{}])[-1]
    know = (cmp.get("knowledge") or {}).get("overall") or {}
    expr = cmp.get("expression") or {}
    result = {
        "name": args.name,
        "persona": pid,
        "config": {
            "lora": {"r": run.lora.r, "alpha": run.lora.alpha},
            "training": {k: getattr(run.training, k) for k in demo.RECIPE_TRAINING},
            "general_replies": general,
            "examples": examples,
            "datasets": run.datasets,
            "samples": samples,
            "max_tokens": frozen["settings"]["max_tokens"],
            "seed": args.seed,
        },
        "headline": traits_headline(scores),
        "knowledge": {
            "run": know.get("run"),
            "base": know.get("base"),
            "n": know.get("n"),
            "p": know.get("p"),
            "diff": know.get("diff"),
            "interval": know.get("interval"),
        },
        "traits_up": sum(r.get("verdict") == "up" for r in expr.get("traits", [])),
        "traits": expr.get("traits", []),
        "controls": cmp.get("controls"),
        "loss_first10": sum(losses[:10]) / max(1, len(losses[:10])),
        "loss_last10": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "eval_loss": evals,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_end": os.getloadavg(),
        "scores_file": os.path.relpath(estatus.dir / "scores.json", args.out),  # OUT-relative: committable
        "train_job": os.path.relpath(status.dir, args.out),
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    print("\n".join(result["headline"]))
    print(
        json.dumps(
            {k: result[k] for k in ("traits_up", "seconds", "wall_s", "loss_first10", "loss_last10")}, default=str
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
