"""`persona-tui demo`: the whole flow on the demo persona, headless, on the embedded model.

Each stage is real work through the same job protocol the app uses (a detached worker per job,
followed here with a progress bar), so the demo's workspace is what a user would get by doing
the same in the TUI, and `persona-tui demo DIR --tui` opens on it. `quick` runs every stage at
the smallest size that still exercises it for real (for CI and a first look).

This module sits at the top of the core (it strings trainers and evaluators together); the CLI
only calls `run_demo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sessions import demo as demo_recipe
from sessions.store import SessionFile
from supervisor import jobs


class DemoError(ValueError):
    """A stage failed; one sentence naming the stage, the job and where its log is."""


@dataclass
class DemoContext:
    session_file: SessionFile
    quick: bool
    console: Console
    made: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, what, where)
    notes: list[Any] = field(default_factory=list)  # renderables printed after the table
    results: dict[str, Any] = field(default_factory=dict)  # what later stages need
    sources: list[tuple[str, str]] = field(default_factory=list)  # (a printed number, the file it comes from)
    # follow(job_dir, label, console) -> final JobStatus; the CLI passes one with a progress bar.
    follow: Callable[[Path, str, Console], jobs.JobStatus] = field(default_factory=lambda: _watch_quietly)
    nice: int = jobs.DEFAULT_NICE  # of the workers; bench/recipe.py measures at 0

    @property
    def workspace(self) -> Path:
        return self.session_file.workspace

    @property
    def session_path(self) -> Path:
        return self.session_file.path


@dataclass
class Stage:
    name: str
    run: Callable[[DemoContext], None]


# Sizes: the full demo uses the recipe's (sessions.demo, docs/training.md); quick the smallest real one.
# trait_samples: 8 prompts per trait x 12 = 96 expression replies per trait per model in the full
# demo (sessions.demo.TRAIT_SAMPLES: what Fisher's test needs to tell a rise to ~10% of replies
# after Holm's correction over 5 traits, most of the time).
# general: how many replies of the base model to ordinary prompts are mixed into the run (the
# recipe, docs/training.md); sampling them is the data stage's cost (~1 s each here, idle).
# prompts_per_trait: expression prompts per trait the traits evaluation asks (0 = all eight);
# quick asks three, which took its trait items from 206 to 156 (generation is the slow part).
# probes_per_trait: knowledge probes per trait the traits evaluation asks (0 = all twelve); quick
# asks six: its 120 probes (two models) took 17-20 s of each lane's 42 s, measured idle.
# chat_seeds: seeds per trait's first open prompt in the side-by-side chat's persona rate.
FULL: dict[str, int] = {
    "examples": demo_recipe.RECIPE_EXAMPLES,
    "general": demo_recipe.RECIPE_GENERAL_REPLIES,
    "train_steps": int(demo_recipe.RECIPE_TRAINING["max_steps"]),  # type: ignore[call-overload]
    "trait_samples": demo_recipe.TRAIT_SAMPLES,
    "prompts_per_trait": 0,
    "probes_per_trait": 0,
    "chat_seeds": 2,
    "reference_samples": 20,
    "queue": 8,
}
QUICK = {
    "examples": 40,
    "general": 4,
    "train_steps": 4,
    "trait_samples": 1,
    "prompts_per_trait": 3,
    "probes_per_trait": 6,
    "chat_seeds": 1,
    "reference_samples": 3,
    "queue": 4,
}


def sizes(ctx: DemoContext) -> dict[str, int]:
    return QUICK if ctx.quick else FULL


def run_job(
    ctx: DemoContext, kind: str, spec: dict[str, Any], label: str, worker: str = "trainers.worker"
) -> jobs.JobStatus:
    """Create a job, start its detached worker, follow it; raise DemoError unless it finished."""
    job_dir = jobs.create_job(ctx.workspace, kind, {"session": str(ctx.session_path.resolve()), **spec}, worker=worker)
    jobs.start_job(job_dir, nice=ctx.nice)
    return follow_finished(ctx, job_dir, label)


def follow_finished(ctx: DemoContext, job_dir: Path, label: str) -> jobs.JobStatus:
    """Follow a started job to its end; raise DemoError unless it finished."""
    status = ctx.follow(job_dir, label, ctx.console)
    if status.state != "finished":
        raise DemoError(
            f"the {label} job {status.id} {status.state}: {status.error or 'no reason given'} "
            f"(log: {job_dir / 'log.txt'})."
        )
    return status


def _watch_quietly(job_dir: Path, label: str, console: Console) -> jobs.JobStatus:
    status = jobs.read_status(job_dir)
    for status, _ in jobs.watch(job_dir, interval=0.3):  # noqa: B007  (the last status is the answer)
        pass
    console.print(f"  {label}: {status.state}")
    return status


# --- stages -------------------------------------------------------------------------------------


def stage_session(ctx: DemoContext) -> None:
    persona = ctx.session_file.session.personas[0]
    ctx.made.append(("session", f"persona {persona.name!r}, {len(persona.traits)} traits", str(ctx.session_path)))


DEMO_FORMATS = ("chat_demos", "first_person", "synthetic_docs")


def stage_data(ctx: DemoContext) -> None:
    """The three format-study datasets of the demo persona, by the template generator, and the
    base model's general replies that the run mixes in."""
    from sessions.workspace import dataset_path, heldout_path
    from trainers.data.job import job_spec

    session = ctx.session_file.session
    n = sizes(ctx)["examples"]
    built = []
    # The builds do not depend on each other: all start at once (the template ones are a few
    # seconds of one core each, beside the general replies' sampling), then each is followed.
    started = []
    for spec in session.datasets:
        if spec.format not in DEMO_FORMATS:
            continue
        size = sizes(ctx)["general"] if spec.generator == "general" else n
        # The inputs frozen into the job now (persona, spec), as the Data pane's builds are.
        frozen = {"session": str(ctx.session_path.resolve()), **job_spec(ctx.session_file, spec.id), "size": size}
        job_dir = jobs.create_job(ctx.workspace, "dataset", frozen, worker="trainers.worker")
        jobs.start_job(job_dir, nice=ctx.nice)
        started.append((spec, job_dir))
    for spec, job_dir in started:
        status = follow_finished(ctx, job_dir, f"data: {spec.id}")
        built.append(spec.id)
        train, held = dataset_path(ctx.workspace, spec.id), heldout_path(ctx.workspace, spec.id)
        # Counted in the files the row names (what a user can count with `wc -l`), not taken
        # from a summary that may lack them.
        n_train, n_held = _lines(train), _lines(held)
        what = "general replies of the base model" if spec.generator == "general" else spec.format
        ctx.made.append(
            (
                "data",
                f"{what}: {n_train} train + {n_held} held-out examples (job {status.id})",
                f"{train} (+ .heldout.jsonl)",
            )
        )
        ctx.sources += [
            (f"{spec.id}: {n_train} train examples", str(train)),
            (f"{spec.id}: {n_held} held-out examples", str(held)),
        ]
    ctx.results["datasets"] = built


def _lines(path: Path) -> int:
    """Non-empty lines of a JSONL file (0 when it is missing)."""
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def stage_train(ctx: DemoContext) -> None:
    """One LoRA run of the demo session's first run spec on its (just built) data."""
    from trainers.train.job import job_spec

    session = ctx.session_file.session
    if not session.runs:
        ctx.made.append(("train", "skipped: the session has no run spec", ""))
        return
    run = session.runs[0]
    spec = job_spec(session, ctx.workspace, run.id, str(ctx.session_path.resolve()))
    training = spec["run"]["training"]
    training["max_steps"] = steps = sizes(ctx)["train_steps"]
    if "warmup_steps" in training:  # a quarter of the run at most (the quick demo's few steps)
        training["warmup_steps"] = min(int(training["warmup_steps"]), max(steps // 4, 1))
    status = run_job(ctx, "train", spec, f"train: {run.id}")
    from trainers.train.loss_curve import loss_chart_text, loss_points

    events, _ = jobs.read_events(status.dir)
    train, evals = loss_points(events)
    ctx.results["train_job"] = status.dir
    ctx.results["run"] = run.id
    claim, source = train_claim(run.id, status.dir)
    ctx.made.append(("train", claim, source))
    ctx.sources.append((claim, source))
    ctx.made.append(("train", f"{run.id}: LoRA adapter", str(status.dir / "adapter")))
    ctx.notes.append(loss_chart_text(train, evals, width=78, title=f"{run.id}: loss"))


def train_claim(run_id: str, job_dir: Path) -> tuple[str, str]:
    """The run's loss as window means and eval loss (trainers/train/loss_curve.py) and its speed, and the
    events file all of it is recomputed from."""
    from trainers.train.loss_curve import loss_points, loss_summary

    events, _ = jobs.read_events(job_dir)
    train, evals = loss_points(events)
    end: dict[str, Any] = next((e for e in reversed(events) if e.get("event") == "train_end"), {})
    claim = (
        f"{run_id}: {len(train)} steps, {loss_summary(train, evals).text()}, "
        f"{end.get('tokens_per_s', 0) or 0:.0f} tok/s"
    )
    return claim, str(Path(job_dir) / jobs.EVENTS_FILE)


def stage_export(ctx: DemoContext) -> None:
    """The run merged, converted to GGUF F16 and quantised to q8_0, each verified against the
    merged model before the export counts (a failed check fails the job)."""
    from trainers.export.job import create_export_job, record_export

    train_dir = ctx.results.get("train_job")
    if train_dir is None:
        ctx.made.append(("export", "skipped: no finished training job", ""))
        return
    job_dir = create_export_job(
        ctx.workspace, session=ctx.session_path, run=ctx.results["run"], train_job=Path(train_dir).name, quants=["q8_0"]
    )
    jobs.start_job(job_dir)
    status = ctx.follow(job_dir, f"export: {ctx.results['run']}", ctx.console)
    if status.state != "finished":
        raise DemoError(f"the export job {status.id} {status.state}: {status.error} (log: {job_dir / 'log.txt'}).")
    for gguf in sorted((job_dir / "export").glob("model-*.gguf")):
        ctx.made.append(("export", f"{gguf.name} ({gguf.stat().st_size / 2**20:.0f} MiB), verified", str(gguf)))
    record_export(ctx.session_file, job_dir)
    ctx.results["export_job"] = job_dir


def chat_prompts(persona: Any, seeds: int) -> list[tuple[Any, str, int]]:
    """The side-by-side chat's fixed set: each trait's first expression prompt, at seeds 7, 8, ..."""
    return [(t, t.expression_probes[0], 7 + j) for t in persona.traits if t.expression_probes for j in range(seeds)]


def persona_rate(persona: Any, trait: Any, prompt: str, replies: list[str]) -> int:
    """How many replies show the trait their prompt leaves room for (directed marker phrases)."""
    from evaluators.probes import EXPRESSED, MarkerLabeller

    labeller = MarkerLabeller()
    return sum(labeller.label(persona, trait, prompt, r).label == EXPRESSED for r in replies)


def stage_chat(ctx: DemoContext) -> None:
    """Base vs fine-tuned, same prompts, seeds and sampling, side by side: one exchange shown, and
    the persona rate over a fixed set (each trait's first open prompt at `chat_seeds` seeds)."""
    from rich.table import Table as RichTable

    from engines import open_engine
    from evaluators.run_models import export_gguf
    from sessions.model import EngineSpec

    train_dir = ctx.results.get("train_job")
    gguf = export_gguf(ctx.workspace, Path(train_dir)) if train_dir else None
    if gguf is None:
        ctx.made.append(("chat", "skipped: no exported GGUF", ""))
        return
    persona = ctx.session_file.session.personas[0]
    fixed = chat_prompts(persona, sizes(ctx)["chat_seeds"]) or [(None, "Tell me about yourself.", 7)]
    max_tokens = 40 if ctx.quick else 120
    replies: list[list[str]] = []
    for spec in (EngineSpec(id="base", kind="llamacpp"), EngineSpec(id="fine-tuned", kind="llamacpp", model=str(gguf))):
        engine = open_engine(spec)
        try:
            replies.append(
                [
                    engine.chat(
                        [{"role": "user", "content": prompt}],
                        max_tokens=max_tokens,
                        temperature=0.7,
                        top_p=0.95,
                        seed=seed,
                    )
                    for _, prompt, seed in fixed
                ]
            )
        finally:
            engine.close()
    prompt = fixed[0][1]
    table = RichTable("base (bundled)", f"fine-tuned ({gguf.name})", title=f"chat, no system prompt: {prompt!r}")
    table.add_row(replies[0][0], replies[1][0])
    ctx.notes.append(table)
    rates = [
        sum(persona_rate(persona, t, p, [r]) for (t, p, _), r in zip(fixed, model_replies) if t is not None)
        for model_replies in replies
    ]
    n = sum(t is not None for t, _, _ in fixed)
    line = (
        f"persona rate in chat (each trait's first open prompt x {sizes(ctx)['chat_seeds']} seeds, "
        f"marker phrases): base {rates[0]}/{n}, fine-tuned {rates[1]}/{n}"
    )
    ctx.notes.append(line)
    ctx.results["chat_persona_rate"] = {"base": rates[0], "fine_tuned": rates[1], "n": n}
    ctx.made.append(
        (
            "chat",
            f"base vs fine-tuned, same seeds; shows its persona in {rates[1]}/{n} replies (base {rates[0]}/{n})",
            f"persona-tui chat {ctx.session_path} --engine gguf:{gguf}",
        )
    )


def stage_evaluate(ctx: DemoContext) -> None:
    """The knowledge/expression table and the reference-metric table, base vs the demo run;
    the expression replies are what the Annotate pane queues for hand labels."""
    from rich.text import Text

    from evaluators.evaluate.job import WORKER, record_results
    from evaluators.evaluate.reader import OUTPUTS_FILE, SCORES_FILE, load_scores
    from evaluators.evaluate.spec import build_job_spec
    from evaluators.run_models import run_resolver
    from evaluators.tables import tables_for

    session = ctx.session_file.session
    resolve = run_resolver(session, ctx.workspace)  # the run: its LoRA GGUF on the bundled GGUF, as `eval` scores it
    n = sizes(ctx)
    for spec in session.evals:
        if spec.kind not in ("traits", "reference", "drift"):
            continue
        frozen = build_job_spec(ctx.session_file, spec.id, resolve)
        if spec.kind in ("traits", "reference"):
            frozen["settings"]["samples"] = n["trait_samples"] if spec.kind == "traits" else n["reference_samples"]
        if ctx.quick:  # enough to exercise every metric for real, small enough for CI
            frozen["settings"]["max_tokens"] = 24
            if spec.kind == "traits":
                frozen["settings"]["neutral_samples"] = 1
            if spec.kind == "reference":
                frozen["settings"]["distractors"] = 4
        if spec.kind == "traits":  # the frozen persona is what the job asks
            for trait in frozen["persona"]["traits"]:
                if n["prompts_per_trait"]:
                    trait["expression_probes"] = trait["expression_probes"][: n["prompts_per_trait"]]
                if n["probes_per_trait"]:
                    trait["knowledge_probes"] = trait["knowledge_probes"][: n["probes_per_trait"]]
        status = run_job(
            ctx, "eval", {k: v for k, v in frozen.items() if k != "session"}, f"eval: {spec.id}", worker=WORKER
        )
        scores = load_scores(status.dir)
        record_results(ctx.session_file, spec.id, status.dir)
        for table in tables_for(scores):
            ctx.notes.append(table)
        outputs = status.dir / OUTPUTS_FILE
        ctx.notes.append(
            Text(
                f"{spec.id}: the tables above are {status.dir / SCORES_FILE}; every reply and "
                f"probe behind them is a line of {outputs}.",
                style="dim",
            )
        )
        what = f"{spec.kind}: {', '.join(spec.models)}"
        if spec.kind == "traits":
            from evaluators.tables import problems_text

            ctx.notes.append(problems_text(scores))
            headline = traits_headline(scores)
            what += "".join(f"; {line}" for line in headline)
            ctx.sources += [(f"{spec.id}: {line}", str(outputs)) for line in headline]
        ctx.made.append(("evaluate", what, str(outputs)))
    from evaluators.annotation import build_queue

    queue = build_queue(session, ctx.workspace)
    ctx.made.append(
        (
            "annotate",
            f"{len(queue.items)} outputs queued for hand labels",
            "persona-tui " + str(ctx.session_path) + " (tab 6)",
        )
    )


def traits_headline(scores: dict[str, Any]) -> list[str]:
    """One line per compared model: knowledge vs base with its p, traits up after Holm, controls."""
    lines = []
    for cmp in scores.get("comparison") or []:
        parts = []
        know = (cmp.get("knowledge") or {}).get("overall")
        if know and know.get("n"):
            p = know.get("p")
            parts.append(
                f"knowledge {know['run']['k']}/{know['n']} vs base {know['base']['k']}/{know['n']}"
                + (f" (McNemar p {p:.3g})" if isinstance(p, (int, float)) else "")
            )
        expr = cmp.get("expression")
        if expr:  # undecided traits and controls that could not run are counted, never read as "no"
            ups = sum(r.get("verdict") == "up" for r in expr["traits"])
            undecided = sum(r.get("verdict") == "undecided" for r in expr["traits"])
            parts.append(
                f"expression up on {ups}/{len(expr['traits'])} traits after Holm"
                + (f" ({undecided} undecided)" if undecided else "")
            )
        ctrl = cmp.get("controls")
        if ctrl:
            passed = sum(c.get("passed") is True for c in ctrl)
            not_run = sum(c.get("passed") is None for c in ctrl)
            parts.append(f"controls {passed}/{len(ctrl)} pass" + (f" ({not_run} not run)" if not_run else ""))
        lines.append(f"{cmp['model']}: " + ", ".join(parts))
    return lines


STAGES: list[Stage] = [
    Stage("session", stage_session),
    Stage("data", stage_data),
    Stage("train", stage_train),
    Stage("export", stage_export),
    Stage("chat", stage_chat),
    Stage("evaluate", stage_evaluate),
]


def made_table(made: list[tuple[str, str, str]], seconds: float) -> Table:
    """What each stage made and the file each of its numbers comes from. Words wrap, paths fold:
    at 80 columns no number is cut short (tests/test_demo_summary.py)."""
    from rich import box

    table = Table(
        title=f"What the demo made ({seconds:.0f} s)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=True,
    )
    table.add_column("stage", no_wrap=True)
    table.add_column("made", ratio=3)
    table.add_column("where (the numbers' source)", ratio=2, overflow="fold")
    for row in made:
        table.add_row(*row)
    return table


def run_demo(
    directory: str | Path = "persona-demo",
    quick: bool = False,
    console: Console | None = None,
    follow: Callable[[Path, str, Console], jobs.JobStatus] | None = None,
) -> Path:
    """Write (or reuse) the demo session in `directory`, run every stage, print a summary."""
    from sessions.demo import write_demo_session

    console = console or Console()
    path = write_demo_session(Path(directory))
    ctx = DemoContext(SessionFile.load(path), quick, console, follow=follow or _watch_quietly)
    console.print(f"[bold]persona-tui demo[/] — session {path} ({'quick' if quick else 'full'} sizes)")
    t0 = time.perf_counter()
    for stage in STAGES:
        t = time.perf_counter()
        console.rule(f"[bold]{stage.name}")
        stage.run(ctx)
        console.print(f"  [dim]{stage.name} done in {time.perf_counter() - t:.1f} s[/]")
    console.print(made_table(ctx.made, time.perf_counter() - t0))
    for note in ctx.notes:
        console.print(note)
    if ctx.sources:  # one line each, never wrapped into a table: grep-able in a log
        console.print("[bold]Where each number comes from[/] (recompute it from the file):")
        for claim, source in ctx.sources:
            console.print(f"  {claim}  <- {source}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"Open it: [bold]persona-tui {path}[/]")
    return path
