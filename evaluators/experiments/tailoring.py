"""The persona-tailoring study (Balepur et al., "Whose Boat Does it Float?"), redone in one command.

    persona-tui experiment SESSION --study tailoring [--size N] [--steps N] [--samples N] [--judge ENGINE] [--quick]

Data: the Mnemonic domain of the persona-tailoring data (`--data DIR`, or the Hub dataset that
`persona-tui data pull tailoring` fetches): a prompt (a word), a chosen and a rejected
mnemonic, and personas of users who would prefer each.

- Four runs, identical settings per method: SFT with personas (`<id>-sft-persona`, the paper's
  `Prompt/Persona/Response` template, gold personas) and without (`<id>-sft-plain`, no persona
  line); DPO with and without (`<id>-dpo-persona`, `<id>-dpo-plain`). DPO starts from the base
  model with a LoRA adapter (the adapter-free model is its reference).
- Three tailoring evaluations on the test split (retrieved personas), each judged pairwise for
  personalization and quality in both orders, chosen- and rejected-persona prompts reported
  apart (the rejected ones are the harder, more telling test): `<id>-sft` (with vs without
  personas), `<id>-dpo` (the same for DPO), `<id>-fewshot` (the trained persona runs against
  the base model prompted with the data's `fewshot` split: the few-shot prompt-only baseline).
- Persona inference: an engine infers, for held-out pairs with gold personas, who would prefer
  each response (the `<id>-inferred` dataset, built by the tailoring importer); the inferred
  persona is right when it is closer to the gold persona of its side than to the other side's,
  by MiniLM embedding similarity and by the judge (both orders).

Judge: `--judge` (an engine id of the session or a model), default the bundled model; `fallback`
judges personalization by MiniLM similarity only (no quality), labelled as such.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from evaluators.evaluate.reader import drop_nulls
from evaluators.experiments.models import BASE, RUN_PREFIX, run_resolver
from evaluators.experiments.runner import Experiment, Follow
from evaluators.experiments.state import RESULT_FILE, ExperimentError, ExperimentState, stored_config, write_json
from sessions.model import DatasetSpec, EngineSpec, EvalSpec, RunSpec

if TYPE_CHECKING:
    from sessions.store import SessionFile

STUDY = "tailoring"
DATA_ENV = "PERSONA_TUI_TAILORING_DIR"
FILES = {
    "sft": "persona-tailoring_sft_train.jsonl",
    "dpo": "persona-tailoring_dpo_train.jsonl",
    "test": "persona-tailoring_test.jsonl",
    "fewshot": "persona-tailoring_fewshot.jsonl",
    "inference": "persona-tailoring_sft_val.jsonl",
}
BUNDLED = "bundled:smollm2-135m-instruct"
FALLBACK = "fallback"
MATCH_PROMPT = "persona_match.txt"
MATCH_PLACEHOLDERS = frozenset({"inferred", "persona_a", "persona_b"})


@dataclass
class TailoringStudy:
    size: int = 0  # training rows per set, 0 = every row (126 SFT, 132 DPO)
    steps: int = 0  # optimizer steps per run; 0 = the run spec's own
    samples: int = 100  # test rows (each gives a chosen- and a rejected-persona prompt)
    inference: int = 35  # held-out pairs whose personas are inferred
    judge: str = ""  # engine id or model; "" = the bundled model; "fallback" = MiniLM only
    max_tokens: int = 96
    judge_max_tokens: int = 160
    data: str = ""
    exp_id: str = ""
    seed: int = 3407

    @property
    def id(self) -> str:
        return self.exp_id or "tailoring"

    def folder(self) -> Path:
        """--data, else $PERSONA_TUI_TAILORING_DIR, else the dataset `persona-tui data pull tailoring` fetched."""
        from evaluators.experiments.study_data import tailoring_folder

        return tailoring_folder(self.data, DATA_ENV)

    def file(self, name: str) -> Path:
        return self.folder() / FILES[name]

    def state_config(self) -> dict[str, Any]:
        keys = ("size", "steps", "samples", "inference", "judge", "max_tokens", "judge_max_tokens", "seed")
        return {k: getattr(self, k) for k in keys}


GPU = {"size": 0, "steps": 0, "samples": 100, "inference": 35, "max_tokens": 96}
QUICK = {"size": 16, "steps": 4, "samples": 4, "inference": 4, "max_tokens": 48, "judge_max_tokens": 96}


def preset(quick: bool = False, workspace: str | Path | None = None, **overrides: Any) -> TailoringStudy:
    given = {k: v for k, v in overrides.items() if v is not None}
    stored = stored_config(workspace, given.get("exp_id") or "tailoring", STUDY, TailoringStudy)
    values = stored if stored is not None else dict(QUICK if quick else GPU)
    values.update(given)
    return TailoringStudy(**values)


# ----------------------------------------------------------------------------- ids and specs

VARIANTS = (("sft", "persona"), ("sft", "plain"), ("dpo", "persona"), ("dpo", "plain"))


def name(cfg: TailoringStudy, method: str, variant: str) -> str:
    return f"{cfg.id}-{method}-{variant}"


def ref(cfg: TailoringStudy, method: str, variant: str) -> str:
    return f"{RUN_PREFIX}{name(cfg, method, variant)}"


def judge_ref(cfg: TailoringStudy) -> str:
    return cfg.judge or BUNDLED


def criteria(cfg: TailoringStudy) -> list[str]:
    return ["personalization"] if cfg.judge == FALLBACK else ["personalization", "quality"]


def inference_engine(exp: Experiment, cfg: TailoringStudy) -> str:
    """The engine id that infers personas: the judge when it is an engine of the session, else
    the bundled model (added as engine `bundled` when the session has none of that id)."""
    if cfg.judge and exp.session.engine(cfg.judge) is not None:
        return cfg.judge
    if exp.session.engine("bundled") is None:
        exp.session.engines.append(EngineSpec(id="bundled", kind="llamacpp", model=BUNDLED))
        exp.say("  added engine bundled (the bundled model, for persona inference)")
    return "bundled"


def evaluations(cfg: TailoringStudy, test: str, fewshot: str) -> list[EvalSpec]:
    common = {
        "data": test,
        "persona_field": "retr",
        "samples": cfg.samples,
        "judge": judge_ref(cfg),
        "criteria": criteria(cfg),
        "max_tokens": cfg.max_tokens,
        "seed": cfg.seed % 100000,
        "experiment": {"id": cfg.id, "study": STUDY},
    }
    if cfg.judge != FALLBACK:
        common["judge_max_tokens"] = cfg.judge_max_tokens
    out = []
    for method in ("sft", "dpo"):
        plain, persona = ref(cfg, method, "plain"), ref(cfg, method, "persona")
        out.append(
            EvalSpec(
                id=f"{cfg.id}-{method}",
                kind="tailoring",
                models=[plain, persona],
                extra={**common, "no_persona": [plain]},
            )
        )
    out.append(
        EvalSpec(
            id=f"{cfg.id}-fewshot",
            kind="tailoring",
            models=[BASE, ref(cfg, "sft", "persona"), ref(cfg, "dpo", "persona")],
            extra={**common, "fewshot": fewshot, "fewshot_models": [BASE]},
        )
    )
    return out


def add_specs(exp: Experiment, cfg: TailoringStudy, inference_rows: Path) -> None:
    for method, variant in VARIANTS:
        exp.ensure_dataset(
            DatasetSpec(
                id=name(cfg, method, variant),
                format=f"tailoring_{method}",
                generator="import",
                size=cfg.size,
                seed=cfg.seed,
                source=str(cfg.file(method)),
                held_out=0.1,
                extra={"persona_source": "gold" if variant == "persona" else "none"},
            )
        )
    exp.ensure_dataset(
        DatasetSpec(
            id=f"{cfg.id}-inferred",
            format="tailoring_sft",
            generator="import",
            size=0,
            seed=cfg.seed,
            source=str(inference_rows),
            held_out=0.0,
            engine=inference_engine(exp, cfg),
            extra={"persona_source": "infer"},
        )
    )
    for method in ("sft", "dpo"):
        template = exp.session.run(name(cfg, method, "persona"))
        if template is None:
            template = RunSpec(id=name(cfg, method, "persona"), datasets=[name(cfg, method, "persona")], method=method)
            template.training.eval_steps = 0
            if cfg.steps:
                template.training.max_steps = cfg.steps
                template.training.warmup_steps = min(template.training.warmup_steps, cfg.steps // 10)
        for variant in ("persona", "plain"):
            run = copy.deepcopy(template)
            run.id, run.datasets = name(cfg, method, variant), [name(cfg, method, variant)]
            exp.ensure_run(run)
        a, b = exp.session.run(name(cfg, method, "persona")), exp.session.run(name(cfg, method, "plain"))
        if (a.lora, a.training, a.base_model, a.backend) != (b.lora, b.training, b.base_model, b.backend):
            raise ExperimentError(
                f"runs {a.id!r} and {b.id!r} differ in their settings; the study compares them "
                "with identical settings, so make them equal in the session."
            )
    for spec in evaluations(cfg, str(cfg.file("test")), str(cfg.file("fewshot"))):
        exp.ensure_eval(spec)
    exp.save_session()


# ----------------------------------------------------------------------------- persona inference


def match_prompt(override: str | Path | None = None) -> Any:
    """The persona-match judge prompt (evaluators/prompts/persona_match.txt, or a user's file)."""
    import re

    from evaluators.judge import PromptFileError, PromptTemplate

    if override:
        path = Path(override).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PromptFileError(
                f"the judge prompt file {path} cannot be read ({e.strerror or e}); fix the path."
            ) from None
        where = str(path)
    else:
        text = resources.files("evaluators.prompts").joinpath(MATCH_PROMPT).read_text(encoding="utf-8")
        where = f"evaluators/prompts/{MATCH_PROMPT}"
    used = set(re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", text))
    if used != MATCH_PLACEHOLDERS:
        raise PromptFileError(
            f"the judge prompt {where} must use exactly {{{{inferred}}}}, {{{{persona_a}}}} and "
            f"{{{{persona_b}}}}; it uses {', '.join(sorted(used)) or 'none'}."
        )
    return PromptTemplate("persona_match", where, text)


def inference_pairs(records: Sequence[Mapping[str, Any]], source: Path) -> list[dict[str, Any]]:
    """(inferred, gold, other gold) for each side of each inferred record, gold read from the
    source row the record came from (`meta.row` is its line)."""
    from trainers.data.formats.rows import BrokenRows, table_records
    from trainers.data.formats.tailoring import REQUIRED

    gold = {line: row for line, row in table_records(source, REQUIRED, BrokenRows(source, False))}
    out = []
    for r in records:
        meta: dict[str, Any] = r.get("meta") or {}
        row = gold.get(meta["row"]) if isinstance(meta.get("row"), int) else None
        if not row or meta.get("persona_source") != "inferred":
            continue
        gc, gr = str(row.get("chosen_persona_gold") or "").strip(), str(row.get("rejected_persona_gold") or "").strip()
        if not gc or not gr:
            continue
        out.append({"row": meta["row"], "side": "chosen", "inferred": meta["chosen_persona"], "gold": gc, "other": gr})
        out.append(
            {"row": meta["row"], "side": "rejected", "inferred": meta["rejected_persona"], "gold": gr, "other": gc}
        )
    return out


def inference_accuracy(
    pairs: Sequence[Mapping[str, Any]], embedder: Any = None, judge: Any = None, prompt: Any = None
) -> dict[str, Any]:
    """Accuracy of inferred personas against the gold ones: by embedding similarity (closer to
    its own side's gold persona than to the other side's) and, with a judge, by asking it in both
    orders (right when the two verdicts sum towards the own side's persona)."""
    from evaluators.judge import combine
    from evaluators.probes import Rate

    out: dict[str, Any] = {"pairs": len(pairs)}
    if embedder is not None and pairs:
        hits = {"chosen": [0, 0], "rejected": [0, 0]}
        sims = []
        for p in pairs:
            e = embedder.embed([p["inferred"], p["gold"], p["other"]])
            own, other = float((e[0] * e[1]).sum()), float((e[0] * e[2]).sum())
            sims.append(own)
            hits[p["side"]][0] += own > other
            hits[p["side"]][1] += 1
        k, n = sum(h[0] for h in hits.values()), sum(h[1] for h in hits.values())
        out["embedding"] = {
            "scorer": "MiniLM cosine similarity",
            "all": Rate(k, n).to_dict(),
            **{side: Rate(*h).to_dict() for side, h in hits.items()},
            "mean_similarity": sum(sims) / len(sims),
        }
    if judge is not None and pairs:
        prompt = prompt or match_prompt()
        outcomes: dict[str, list[str]] = {"chosen": [], "rejected": []}
        for p in pairs:
            first = judge.ask(
                prompt.render(inferred=p["inferred"], persona_a=p["gold"], persona_b=p["other"]), "verdict"
            )
            second = judge.ask(
                prompt.render(inferred=p["inferred"], persona_a=p["other"], persona_b=p["gold"]), "verdict"
            )
            outcomes[p["side"]].append(combine(first.answer, second.answer))
        every = outcomes["chosen"] + outcomes["rejected"]

        def rate(items: list[str]) -> dict[str, Any]:
            scored = [o for o in items if o in ("win", "tie", "loss")]
            return {**Rate(scored.count("win"), len(scored)).to_dict(), "unparseable": len(items) - len(scored)}

        out["judge"] = {
            "scorer": getattr(judge, "name", "judge"),
            "all": rate(every),
            **{side: rate(items) for side, items in outcomes.items()},
        }
    return out


# ----------------------------------------------------------------------------- tables


def inference_table(inference: Mapping[str, Any]) -> Table:
    table = Table(title="Persona inference: inferred vs gold personas", title_justify="left")
    for col in ("Scored by", "Accuracy", "Chosen side", "Rejected side"):
        table.add_column(col, justify="left" if col == "Scored by" else "right")

    def cell(d: Mapping[str, Any] | None) -> Text:
        if not d or not d.get("n"):
            return Text("–", style="dim")
        t = Text(f"{d['rate']:.0%}", style="bold")
        t.append(f" [{d['low']:.0%}–{d['high']:.0%}] {d['k']}/{d['n']}", style="dim")
        return t

    for key in ("embedding", "judge"):
        d = inference.get(key)
        if d:
            table.add_row(d.get("scorer", key), cell(d.get("all")), cell(d.get("chosen")), cell(d.get("rejected")))
    table.caption = (
        f"{inference.get('pairs', 0)} inferred personas; right when closer to (or judged to match) the "
        "gold persona of its own side than the other side's. Intervals: Wilson 95%."
    )
    table.caption_justify = "left"
    return table


def result_tables(result: Mapping[str, Any]) -> list[Any]:
    from evaluators.tables import judge_table

    out: list[Any] = []
    for key, title in (
        ("sft", "SFT: with personas vs without"),
        ("dpo", "DPO: with personas vs without"),
        ("fewshot", "Trained with personas vs the few-shot prompt-only baseline"),
    ):
        scores = (result.get("scores") or {}).get(key)
        if scores:
            table = judge_table(scores)
            table.title = f"{title} · {scores.get('judge', '')}"
            out.append(table)
    if result.get("inference"):
        out.append(inference_table(result["inference"]))
    return out


# ----------------------------------------------------------------------------- the run


def run(
    session_file: SessionFile,
    cfg: TailoringStudy,
    console: Console | None = None,
    follow: Follow | None = None,
    foreground: bool = False,
    save: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    from supervisor import jobs
    from trainers.data import reader as data_reader

    console = console or Console()
    for key in FILES:
        if not cfg.file(key).is_file():
            raise ExperimentError(
                f"the tailoring data file {cfg.file(key)} does not exist; pass --data DIR (the folder "
                f"holding the persona-tailoring JSONL files), set {DATA_ENV}, or run "
                "'persona-tui data pull tailoring'."
            )
    state = ExperimentState.open(session_file.workspace, cfg.id, STUDY, cfg.state_config())
    exp = Experiment(session_file, state, console, follow, foreground, save)
    console.rule(f"[bold]tailoring study {cfg.id}[/] · judge {judge_ref(cfg)}")
    rows_file = state.dir / "inference-rows.jsonl"
    if not rows_file.is_file():
        lines = [ln for ln in cfg.file("inference").read_text(encoding="utf-8").splitlines() if ln.strip()]
        rows_file.write_text("\n".join(lines[: cfg.inference]) + "\n", encoding="utf-8")
    add_specs(exp, cfg, rows_file)

    datasets = [name(cfg, m, v) for m, v in VARIANTS] + [f"{cfg.id}-inferred"]
    for ds in datasets:
        from trainers.data.job import job_spec as dataset_job_spec

        spec = dataset_job_spec(exp.session_file, ds)  # inputs frozen at creation
        exp.job_step(f"data:{ds}", f"data {ds}", partial(jobs.create_job, exp.workspace, "dataset", spec))

    pinned: dict[str, str] = {}
    for method, variant in VARIANTS:
        rid = name(cfg, method, variant)

        def create(rid: str = rid) -> Path:
            from trainers.train.job import job_spec

            spec = job_spec(exp.session, exp.workspace, rid, str(exp.session_path))
            if cfg.steps:
                spec["run"]["training"]["max_steps"] = cfg.steps
                spec["run"]["training"]["warmup_steps"] = min(spec["run"]["training"]["warmup_steps"], cfg.steps // 10)
            return jobs.create_job(exp.workspace, "train", spec, job_id=jobs.new_job_id(f"train-{rid}"[:40]))

        rec, _ = exp.job_step(f"train:{method}-{variant}", f"train {rid}", create, resumable=True)
        pinned[rid] = rec["job"]

    resolve = run_resolver(exp.session, exp.workspace, pinned=pinned)
    scores: dict[str, dict[str, Any]] = {}
    eval_jobs: dict[str, str] = {}
    for key in ("sft", "dpo", "fewshot"):
        rec, scores[key] = exp.eval_step(f"eval:{key}", f"{cfg.id}-{key}", resolve)
        eval_jobs[key] = rec["job"]

    def score_inference() -> dict[str, Any]:
        from evaluators.fallback import shared_embedder

        records = data_reader.load_records(exp.workspace, f"{cfg.id}-inferred", "train")
        pairs = inference_pairs(records, rows_file)
        judge = None
        if cfg.judge != FALLBACK:
            from engines import open_engine
            from evaluators.evaluate.spec import resolve_model
            from evaluators.judge import Judge

            engine = open_engine(resolve_model(exp.session, judge_ref(cfg), exp.session_path.parent, resolve))
            judge = Judge(engine, judge_ref(cfg), max_tokens=cfg.judge_max_tokens, seed=cfg.seed % 100000)
        try:
            return inference_accuracy(pairs, shared_embedder(), judge)
        finally:
            if judge is not None and hasattr(judge.engine, "close"):
                judge.engine.close()

    inference = exp.computed_step("inference", "persona-inference accuracy", score_inference)["result"]
    problems = [f"{k}: {p}" for k, sc in scores.items() for p in sc.get("problems", [])]
    result = {
        "id": cfg.id,
        "study": STUDY,
        "config": dataclasses.asdict(cfg),
        "data": str(cfg.folder()),
        "scores": scores,
        "inference": inference,
        "jobs": {**{f"train:{k}": v for k, v in pinned.items()}, **{f"eval:{k}": v for k, v in eval_jobs.items()}},
        "partial": any(bool(sc.get("partial")) for sc in scores.values()),
        "problems": problems,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(state.dir / RESULT_FILE, result)
    if exp.ran or not state.get("result").get("recorded"):
        from evaluators.evaluate.reader import summary

        sft_eval = next(e for e in exp.session.evals if e.id == f"{cfg.id}-sft")
        sft_eval.extra["experiment"] = drop_nulls(
            {
                "id": cfg.id,
                "study": STUDY,
                "result": f"experiments/{cfg.id}/{RESULT_FILE}",
                "finished": result["finished"],
                "win_rates": {k: summary(sc) for k, sc in scores.items()},
                "inference": {
                    k: round(v["all"]["rate"], 4)
                    for k, v in inference.items()
                    if isinstance(v, dict) and isinstance((v.get("all") or {}).get("rate"), float)
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
