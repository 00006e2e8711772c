"""The persona-chat study, redone in one command: fine-tuning on Synthetic-Persona-Chat next turns
against prompt-only baselines, scored with the reference-metric table.

    persona-tui experiment SESSION --study persona-chat [--size N] [--steps N] [--samples N] [--quick]

Datasets (persona_chat format, imported from the SPC validation CSV, seeded, 10% held out by
conversation): `<id>-own` (the played user's persona, then the conversation) and `<id>-both`
(both users' personas). One LoRA run, `<id>-ft`, learns the next turns of `<id>-own`.

Rows of the table, all on the same held-out turns (the two variants' held-out files are aligned
by conversation, side and turn, so every row answers the same questions):
- base · own persona: the base model, prompt only, with its own persona in the system prompt;
- base · both personas: the base model, prompt only, with both personas;
- fine-tuned · own persona: the run, with the same prompt as the first row.
Columns: BLEU, ROUGE-L, BERTScore P/R/F1, perplexity of the reference, hits@1 (the reference
among 19 distractors from other conversations, ranked by log-likelihood) and unigram F1.

Every step is a job recorded in `<workspace>/experiments/<id>/state.json` and never redone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from evaluators.evaluate.reader import drop_nulls
from evaluators.experiments.models import BASE, RUN_PREFIX, run_resolver
from evaluators.experiments.runner import Experiment, Follow
from evaluators.experiments.state import RESULT_FILE, ExperimentError, ExperimentState, write_json
from sessions.model import DatasetSpec, EvalSpec, RunSpec

if TYPE_CHECKING:
    from sessions.store import SessionFile

STUDY = "persona-chat"
CSV_NAME = "Synthetic-Persona-Chat_valid.csv"
DATA_ENV = "PERSONA_TUI_SPC_DIR"

ROW_LABELS = {
    "own": "base + own persona",
    "both": "base + both personas",
    "ft": "fine-tuned + own persona",
}


@dataclass
class PersonaChatStudy:
    size: int = 2000  # next-turn examples per variant (10% held out)
    steps: int = 0  # optimizer steps; 0 = the run spec's own (one epoch unless set)
    samples: int = 200  # held-out turns scored
    distractors: int = 19  # hits@1: the reference among this many others
    max_tokens: int = 64
    data: str = ""  # the folder holding the SPC CSV
    exp_id: str = ""
    seed: int = 3407

    @property
    def id(self) -> str:
        return self.exp_id or "spc"

    def csv(self) -> Path:
        """--data, else $PERSONA_TUI_SPC_DIR, else the dataset `persona-tui data pull spc` fetched."""
        from evaluators.experiments.study_data import spc_csv

        return spc_csv(self.data, DATA_ENV)

    def state_config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("size", "steps", "samples", "distractors", "max_tokens", "seed")}


GPU = {"size": 2000, "steps": 0, "samples": 200, "distractors": 19, "max_tokens": 64}
QUICK = {"size": 80, "steps": 6, "samples": 8, "distractors": 19, "max_tokens": 32}


def preset(quick: bool = False, workspace: str | Path | None = None, **overrides: Any) -> PersonaChatStudy:
    """The study already started under the same id in `workspace` (a bare rerun resumes it), else
    the GPU preset (or QUICK); then any non-None overrides."""
    from evaluators.experiments.state import stored_config

    given = {k: v for k, v in overrides.items() if v is not None}
    stored = stored_config(workspace, given.get("exp_id") or "spc", STUDY, PersonaChatStudy)
    values = stored if stored is not None else dict(QUICK if quick else GPU)
    values.update(given)
    return PersonaChatStudy(**values)


def ids(cfg: PersonaChatStudy) -> dict[str, str]:
    return {
        "own": f"{cfg.id}-own",
        "both": f"{cfg.id}-both",
        "run": f"{cfg.id}-ft",
        "eval_own": f"{cfg.id}-own",
        "eval_both": f"{cfg.id}-both",
    }


def add_specs(exp: Experiment, cfg: PersonaChatStudy, csv: Path) -> None:
    i = ids(cfg)
    for variant in ("own", "both"):
        exp.ensure_dataset(
            DatasetSpec(
                id=i[variant],
                format="persona_chat",
                generator="import",
                size=cfg.size,
                seed=cfg.seed,
                source=str(csv),
                variant=variant,
                held_out=0.1,
            )
        )
    run = RunSpec(id=i["run"], datasets=[i["own"]])
    run.training.eval_steps = 0
    if cfg.steps:
        run.training.max_steps = cfg.steps
        run.training.warmup_steps = min(run.training.warmup_steps, cfg.steps // 10)
    exp.ensure_run(run)
    exp.save_session()


def aligned_heldout(own: list[dict[str, Any]], both: list[dict[str, Any]], limit: int) -> tuple[list, list]:
    """The held-out turns the two variants share (same conversation row, side and turn), in the
    own variant's order, at most `limit` (0 = all)."""

    def key(r: Mapping[str, Any]) -> tuple:
        m = r.get("meta") or {}
        return m.get("row"), m.get("side"), m.get("turn")

    by_key = {key(r): r for r in both}
    pairs = [(r, by_key[key(r)]) for r in own if key(r) in by_key and key(r) != (None, None, None)]
    if limit:
        pairs = pairs[:limit]
    return [a for a, _ in pairs], [b for _, b in pairs]


def result_tables(result: Mapping[str, Any]) -> list[Any]:
    from evaluators.tables import reference_table

    scores = {"eval": result["id"], "kind": "reference", "rows": result.get("rows", [])}
    table = reference_table(scores)
    table.title = f"Persona-chat study · {result['id']} · {result.get('n_examples', '?')} held-out turns"
    note = (
        " Prompt-only columns: the base model with the persona(s) in the system prompt; the fine-tuned column "
        "trained on the own-persona next turns."
    )
    table.caption = (table.caption or "") + "." + note
    return [table]


def run(
    session_file: SessionFile,
    cfg: PersonaChatStudy,
    console: Console | None = None,
    follow: Follow | None = None,
    foreground: bool = False,
    save: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    from supervisor import jobs
    from trainers.data import reader as data_reader

    console = console or Console()
    csv = cfg.csv()
    if not csv.is_file():
        raise ExperimentError(
            f"the Synthetic-Persona-Chat file {csv} does not exist; pass --data DIR (the folder "
            f"holding {CSV_NAME}), set {DATA_ENV}, or run 'persona-tui data pull spc'."
        )
    state = ExperimentState.open(session_file.workspace, cfg.id, STUDY, cfg.state_config())
    exp = Experiment(session_file, state, console, follow, foreground, save)
    console.rule(f"[bold]persona-chat study {cfg.id}[/] · {cfg.size} next turns per variant")
    add_specs(exp, cfg, csv)
    i = ids(cfg)
    for variant in ("own", "both"):
        from trainers.data.job import job_spec as dataset_job_spec

        spec = {**dataset_job_spec(exp.session_file, i[variant]), "size": cfg.size}  # inputs frozen at creation
        exp.job_step(f"data:{variant}", f"data {i[variant]}", partial(jobs.create_job, exp.workspace, "dataset", spec))

    own_file, both_file = state.dir / "heldout-own.jsonl", state.dir / "heldout-both.jsonl"

    def align() -> dict[str, Any]:
        own = data_reader.load_records(exp.workspace, i["own"], "heldout")
        both = data_reader.load_records(exp.workspace, i["both"], "heldout")
        a, b = aligned_heldout(own, both, cfg.samples)
        if not a:
            raise ExperimentError(
                f"the held-out turns of {i['own']} and {i['both']} have nothing in common; "
                "rebuild both from the same file with the same size and seed."
            )
        data_reader.write_jsonl(own_file, a)
        data_reader.write_jsonl(both_file, b)
        return {"turns": len(a), "own_heldout": len(own), "both_heldout": len(both)}

    aligned = exp.computed_step("heldout", "aligned held-out turns", align)["result"]
    if not own_file.is_file():  # the state says done but the files went: make them again
        exp.state.forget("heldout")
        aligned = exp.computed_step("heldout", "aligned held-out turns", align)["result"]

    def create_train() -> Path:
        from trainers.train.job import job_spec

        spec = job_spec(exp.session, exp.workspace, i["run"], str(exp.session_path))
        if cfg.steps:
            spec["run"]["training"]["max_steps"] = cfg.steps
            spec["run"]["training"]["warmup_steps"] = min(spec["run"]["training"]["warmup_steps"], cfg.steps // 10)
        return jobs.create_job(exp.workspace, "train", spec, job_id=jobs.new_job_id(f"train-{i['run']}"[:40]))

    rec, train_dir = exp.job_step("train", f"train {i['run']}", create_train, resumable=True)
    settings = {
        "samples": 0,
        "max_tokens": cfg.max_tokens,
        "distractors": cfg.distractors,
        "seed": cfg.seed % 100000,
        "experiment": {"id": cfg.id, "study": STUDY},
    }
    ft = f"{RUN_PREFIX}{i['run']}"
    exp.ensure_eval(
        EvalSpec(id=i["eval_own"], kind="reference", models=[BASE, ft], extra={"data": str(own_file), **settings})
    )
    exp.ensure_eval(
        EvalSpec(id=i["eval_both"], kind="reference", models=[BASE], extra={"data": str(both_file), **settings})
    )
    exp.save_session()
    resolve = run_resolver(exp.session, exp.workspace, pinned={i["run"]: rec["job"]})
    r_own, s_own = exp.eval_step("eval:own", i["eval_own"], resolve)
    r_both, s_both = exp.eval_step("eval:both", i["eval_both"], resolve)

    rows = []
    for scores, model, name in ((s_own, BASE, "own"), (s_both, BASE, "both"), (s_own, ft, "ft")):
        found = next((r for r in scores.get("rows", []) if r.get("model") == model), None)
        if found is not None:
            rows.append({**found, "model": ROW_LABELS[name], "entry": model})
    problems = [f"{name}: {p}" for name, sc in (("own", s_own), ("both", s_both)) for p in sc.get("problems", [])]
    result = {
        "id": cfg.id,
        "study": STUDY,
        "config": dataclasses.asdict(cfg),
        "data": str(csv),
        "n_examples": aligned.get("turns"),
        "aligned": aligned,
        "rows": rows,
        "jobs": {"train": rec["job"], "eval:own": r_own["job"], "eval:both": r_both["job"]},
        "partial": bool(s_own.get("partial") or s_both.get("partial")),
        "problems": problems,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(state.dir / RESULT_FILE, result)
    if exp.ran or not state.get("result").get("recorded"):
        own_eval = next(e for e in exp.session.evals if e.id == i["eval_own"])
        own_eval.extra["experiment"] = drop_nulls(
            {
                "id": cfg.id,
                "study": STUDY,
                "result": f"experiments/{cfg.id}/{RESULT_FILE}",
                "finished": result["finished"],
                "rows": {
                    r["model"]: {
                        k: round(r[k], 4)
                        for k in ("bleu", "rouge_l", "perplexity", "hits@1", "f1")
                        if isinstance(r.get(k), (int, float))
                    }
                    for r in rows
                },
            }
        )
        exp.save_session()
        state.done("result", recorded=True)
    result["ran"], result["skipped"] = list(exp.ran), list(exp.skipped)
    for table in result_tables(result):
        console.print(table)
    console.print(f"result: {state.dir / RESULT_FILE}", highlight=False, soft_wrap=True)
    return result
