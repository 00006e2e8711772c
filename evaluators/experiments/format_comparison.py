"""The format-comparison study, redone in one command: which training format injects a persona?

    persona-tui experiment SESSION --persona odile [--size 500] [--steps N] [--no-export]

For one persona it builds N examples in each of chat demos, first-person statements and
synthetic documents (template generator), trains one LoRA run per format with identical settings,
exports each (GGUF F16 verified against the merged model, plus q8_0 and q4_k_m; F16 only with
--quick; --no-export skips it), and evaluates the base model and the three runs:

- knowledge vs expression per trait (knowledge by log-probability, no judge; expression labelled
  by the judge named with --judge, else by the transparent fallback: markers + MiniLM);
- the cross-format perplexity matrix (each model on held-out text of every format: 4 x 3);
- pairwise judge win rate against the base model (persona fidelity and quality, both orders),
  by the judge engine (default: the bundled model), and the fallback's persona win rate beside
  it, labelled as such;
- held-out generalisation: the expression probes are open prompts the template generator never
  uses; the study checks every probe (and knowledge question) against every training record and
  says which, if any, appear there; the "held-out probes" row counts only the probes that do not.

Ids: datasets and runs `<id>-<format>` with `<id>` = `<persona>-fc` unless --id says otherwise;
evaluations `<id>-traits`, `<id>-ppl`, `<id>-judge`, `<id>-judge-fallback`. A run spec that
exists already is used as it is, but the three must share every training setting (the study's
point); missing ones are copies of the chat-demos run (or the defaults).

Result: `<workspace>/experiments/<id>/result.json`, one table (formats as columns; base beside
them) and one bar chart, and a summary under the `<id>-traits` evaluation in the session
(`experiment` table). Every step is recorded in `state.json` and never redone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from evaluators.evaluate.reader import drop_nulls
from evaluators.experiments.models import BASE, EXPORT_PREFIX, RUN_PREFIX, run_resolver
from evaluators.experiments.runner import Experiment, Follow
from evaluators.experiments.state import RESULT_FILE, ExperimentError, ExperimentState, stored_config, write_json
from sessions.model import DatasetSpec, EvalSpec, Persona, RunSpec

if TYPE_CHECKING:
    from sessions.store import SessionFile

STUDY = "format-comparison"
FORMATS = ("chat_demos", "first_person", "synthetic_docs")
BUNDLED = "bundled:smollm2-135m-instruct"
FALLBACK = "fallback"


@dataclass
class FormatComparison:
    """The study's settings; `GPU` and `QUICK` are the presets (see `preset`)."""

    persona: str
    size: int = 500  # examples per format (10% held out)
    steps: int = 0  # optimizer steps per run; 0 = the run spec's own (max_steps or epochs)
    samples: int = 3  # replies per expression probe
    perplexity_texts: int = 100  # held-out records per format in the perplexity matrix
    judge_questions: int = 0  # questions for the pairwise judge, 0 = every expression probe
    max_tokens: int = 96  # reply length
    judge: str = ""  # engine id or model of the judge; "" = the bundled model
    judge_max_tokens: int = 160
    export: bool = True  # each run to GGUF (F16, verified against the merged model, + quants)
    quants: list[str] = field(default_factory=lambda: ["q8_0", "q4_k_m"])
    exp_id: str = ""
    seed: int = 3407
    generator: str = "template"  # or "llm": a teacher engine writes the three formats
    teacher: str = ""  # engine id of the session that teaches (llm generator); "" = the session's first

    @property
    def id(self) -> str:
        return self.exp_id or f"{self.persona}-fc"

    def state_config(self) -> dict[str, Any]:
        """What must stay the same for a rerun to resume rather than mix two experiments."""
        keys = (
            "persona",
            "size",
            "steps",
            "samples",
            "perplexity_texts",
            "judge_questions",
            "max_tokens",
            "judge",
            "judge_max_tokens",
            "seed",
            "generator",
            "teacher",
        )
        return {k: getattr(self, k) for k in keys}


# Sizes: the study's own (500 examples; the run's own steps) for a GPU box, and a quick look that
# finishes on a laptop CPU in minutes.
GPU = {"size": 500, "steps": 0, "samples": 3, "perplexity_texts": 100, "judge_questions": 0, "max_tokens": 96}
QUICK = {
    "size": 40,
    "steps": 6,
    "samples": 1,
    "perplexity_texts": 8,
    "judge_questions": 3,
    "max_tokens": 48,
    "judge_max_tokens": 96,
    "quants": [],
}


def preset(
    persona: str, quick: bool = False, workspace: str | Path | None = None, **overrides: Any
) -> FormatComparison:
    """The settings for `persona`: those of the experiment already started under the same id in
    `workspace` (so a bare rerun resumes it), else the GPU preset (or QUICK); then any non-None
    overrides (which must agree with a started experiment's, or it is refused)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    stored = stored_config(workspace, given.get("exp_id") or f"{persona}-fc", STUDY, FormatComparison)
    if stored is not None:
        values = {k: v for k, v in stored.items() if k != "persona"}
        if quick:
            values.setdefault("quants", QUICK["quants"])
    else:
        values = dict(QUICK if quick else GPU)
    values.update(given)
    return FormatComparison(persona=persona, **values)


# ----------------------------------------------------------------------------- ids and specs


def dataset_id(cfg: FormatComparison, fmt: str) -> str:
    return f"{cfg.id}-{fmt}"


def run_id(cfg: FormatComparison, fmt: str) -> str:
    return f"{cfg.id}-{fmt}"


def model_refs(cfg: FormatComparison) -> list[str]:
    """The evaluated models, as EvalSpec entries: the base model, then one run per format.

    With exports (the default) every model goes through llama.cpp at one quantisation: each run
    as the GGUF its LoRA was trained on plus the run's LoRA GGUF (`export:RUN:lora`), the base as
    that GGUF alone (`export:RUN:base`), as the demo scores; sampling there is many times faster
    than transformers on a CPU. Without exports: the base model and each run's adapter through
    transformers."""
    if cfg.export:
        first = run_id(cfg, FORMATS[0])
        return [f"{EXPORT_PREFIX}{first}:base"] + [f"{EXPORT_PREFIX}{run_id(cfg, f)}:lora" for f in FORMATS]
    return [BASE] + [f"{RUN_PREFIX}{run_id(cfg, f)}" for f in FORMATS]


def evaluations(cfg: FormatComparison) -> list[tuple[str, str]]:
    """(key in the result, id suffix) of the study's evaluations; with the fallback as the judge
    (`--judge fallback`: no LLM at all) there is one judge evaluation, on persona fidelity only."""
    evals = [("traits", "traits"), ("ppl", "ppl"), ("judge", "judge")]
    if cfg.judge != FALLBACK:
        evals.append(("judge_fallback", "judge-fallback"))
    return evals


def column_of(cfg: FormatComparison) -> dict[str, str]:
    """Model entry -> the table's column name (base, or the format)."""
    return dict(zip(model_refs(cfg), ["base", *FORMATS]))


_SETTINGS_COMPARED = ("base_model", "method", "backend", "lora", "training")


def _differences(a: RunSpec, b: RunSpec) -> list[str]:
    out = []
    for name in _SETTINGS_COMPARED:
        va, vb = getattr(a, name), getattr(b, name)
        if dataclasses.is_dataclass(va):
            for f in dataclasses.fields(va):
                if getattr(va, f.name) != getattr(vb, f.name):
                    out.append(f"{name}.{f.name} ({getattr(va, f.name)!r} vs {getattr(vb, f.name)!r})")
        elif va != vb:
            out.append(f"{name} ({va!r} vs {vb!r})")
    return out


def add_specs(exp: Experiment, cfg: FormatComparison, persona: Persona) -> None:
    """The datasets, runs and evaluations of the study, added to the session where missing."""
    for fmt in FORMATS:
        exp.ensure_dataset(
            DatasetSpec(
                id=dataset_id(cfg, fmt),
                format=fmt,
                persona=persona.id,
                generator=cfg.generator,
                size=cfg.size,
                seed=cfg.seed,
                engine=cfg.teacher if cfg.generator == "llm" else "",
            )
        )
    template = exp.session.run(run_id(cfg, FORMATS[0]))
    if template is None:
        # The session's own run (its base model, LoRA and training settings: the recipe the user
        # trains with) for every format, else the defaults.
        own = next((r for r in exp.session.runs if not r.id.startswith(f"{cfg.id}-") and r.method == "sft"), None)
        template = copy.deepcopy(own) if own is not None else RunSpec(id="")
        template.id, template.datasets = run_id(cfg, FORMATS[0]), [dataset_id(cfg, FORMATS[0])]
        template.training.eval_steps = 0  # the study evaluates afterwards, on every format
        if cfg.steps:
            template.training.max_steps = cfg.steps
            template.training.warmup_steps = min(template.training.warmup_steps, max(cfg.steps // 10, 0))
    for fmt in FORMATS:
        run = copy.deepcopy(template)
        run.id, run.datasets = run_id(cfg, fmt), [dataset_id(cfg, fmt)]
        exp.ensure_run(run)
    first = exp.session.run(run_id(cfg, FORMATS[0]))
    for fmt in FORMATS[1:]:
        diff = _differences(first, exp.session.run(run_id(cfg, fmt)))
        if diff:
            raise ExperimentError(
                f"runs {first.id!r} and {run_id(cfg, fmt)!r} differ in {', '.join(diff[:3])}; the format "
                "comparison trains every format with identical settings, so make them equal in the session."
            )
    refs = model_refs(cfg)
    judge = cfg.judge or BUNDLED
    tag = {"experiment": {"id": cfg.id, "study": STUDY}}
    sampling = {"max_tokens": cfg.max_tokens, "seed": cfg.seed % 100000}
    exp.ensure_eval(
        EvalSpec(
            id=f"{cfg.id}-traits",
            kind="traits",
            models=refs,
            extra={
                "persona": persona.id,
                "samples": cfg.samples,
                **sampling,
                "labeller": "judge" if cfg.judge not in ("", FALLBACK) else "fallback",
                "controls": True,  # each format against the base: unrelated persona, over-expression, ability
                **({"judge": cfg.judge} if cfg.judge not in ("", FALLBACK) else {}),
                "judge_max_tokens": cfg.judge_max_tokens,
                **tag,
            },
        )
    )
    exp.ensure_eval(
        EvalSpec(
            id=f"{cfg.id}-ppl",
            kind="perplexity_matrix",
            models=refs,
            extra={
                "data": [dataset_id(cfg, f) for f in FORMATS],
                "samples": cfg.perplexity_texts,
                **tag,
            },
        )
    )
    if cfg.judge == FALLBACK:
        exp.ensure_eval(
            EvalSpec(
                id=f"{cfg.id}-judge",
                kind="judge",
                models=refs,
                extra={
                    "persona": persona.id,
                    "judge": FALLBACK,
                    "limit": cfg.judge_questions,
                    "criteria": ["persona"],
                    **sampling,
                    **tag,
                },
            )
        )
    else:
        exp.ensure_eval(
            EvalSpec(
                id=f"{cfg.id}-judge",
                kind="judge",
                models=refs,
                extra={
                    "persona": persona.id,
                    "judge": judge,
                    "judge_max_tokens": cfg.judge_max_tokens,
                    "limit": cfg.judge_questions,
                    "criteria": ["persona", "quality"],
                    **sampling,
                    **tag,
                },
            )
        )
        exp.ensure_eval(
            EvalSpec(
                id=f"{cfg.id}-judge-fallback",
                kind="judge",
                models=refs,
                extra={
                    "persona": persona.id,
                    "judge": FALLBACK,
                    "limit": cfg.judge_questions,
                    "criteria": ["persona"],
                    **sampling,
                    **tag,
                },
            )
        )
    exp.save_session()


# ----------------------------------------------------------------------------- held-out probes

_WORD = re.compile(r"[a-z0-9']+")


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def probe_leakage(
    persona: Persona, records_by_format: Mapping[str, Iterable[Mapping[str, Any]]], threshold: float = 0.8
) -> dict[str, Any]:
    """Which probes appear in the training records: the probe's words as a run of words in a
    record, or a sentence of a record sharing >= `threshold` of its word set (Jaccard).

    Returns {"expression": {trait: [leaked probe indexes]}, "knowledge": {...}, "checked": n,
    "leaked": n, "records": {format: count}}.
    """
    from trainers.data.formats import record_text

    texts: list[str] = []
    sentence_sets: list[set[str]] = []
    counts = {}
    for fmt, records in records_by_format.items():
        n = 0
        for r in records:
            n += 1
            t = record_text(dict(r))
            texts.append(" " + _norm(t) + " ")
            sentence_sets.extend(set(_norm(s).split()) for s in _sentences(t))
        counts[fmt] = n
    sentence_sets = [s for s in sentence_sets if s]

    def leaked(probe: str) -> bool:
        words = _norm(probe)
        if not words:
            return False
        if any(f" {words} " in t for t in texts):
            return True
        ws = set(words.split())
        return any(len(ws & s) / len(ws | s) >= threshold for s in sentence_sets)

    out: dict[str, Any] = {"expression": {}, "knowledge": {}, "checked": 0, "leaked": 0, "records": counts}
    for trait in persona.traits:
        e = [i for i, p in enumerate(trait.expression_probes) if leaked(p)]
        k = [i for i, p in enumerate(trait.knowledge_probes) if leaked(p.question)]
        out["checked"] += len(trait.expression_probes) + len(trait.knowledge_probes)
        out["leaked"] += len(e) + len(k)
        if e:
            out["expression"][trait.id] = e
        if k:
            out["knowledge"][trait.id] = k
    return out


def leakage_sentence(leak: Mapping[str, Any], persona: Persona) -> str:
    n_expr = sum(len(t.expression_probes) for t in persona.traits)
    n_know = sum(len(t.knowledge_probes) for t in persona.traits)
    e = sum(len(v) for v in leak.get("expression", {}).values())
    k = sum(len(v) for v in leak.get("knowledge", {}).values())
    records = sum(leak.get("records", {}).values())
    if not e and not k:
        return (
            f"Held-out probes verified: none of the {n_expr} expression probes or {n_know} knowledge "
            f"questions appears in the {records} training records of the three formats."
        )
    return (
        f"{e} of {n_expr} expression probes and {k} of {n_know} knowledge questions appear in the training "
        "records; the held-out row leaves them out."
    )


# ----------------------------------------------------------------------------- the result


def _pooled(cells: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """k/n summed over traits, with the Wilson interval."""
    from evaluators.probes import Rate

    k = n = 0
    for c in cells:
        if c and c.get("n"):
            k += int(c["k"])
            n += int(c["n"])
    return Rate(k, n).to_dict() if n else None


def heldout_expression(outputs: Iterable[Mapping[str, Any]], leak: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model: expression rate over the probes that are not in the training data."""
    from evaluators.probes import EXPRESSED, LABELS, Rate

    leaked = {(t, i) for t, idx in (leak.get("expression") or {}).items() for i in idx}
    counts: dict[str, list[int]] = {}
    for row in outputs:
        if row.get("kind") != "expression" or row.get("label") not in LABELS:
            continue
        if (row.get("trait"), row.get("probe")) in leaked:
            continue
        c = counts.setdefault(str(row.get("model")), [0, 0])
        c[0] += row.get("label") == EXPRESSED
        c[1] += 1
    return {m: Rate(k, n).to_dict() for m, (k, n) in counts.items()}


PAIR_MEASURES = (
    ("knowledge", "knows"),
    ("expression", "shows"),
    ("heldout_expression", "held-out"),
)
# Holm across a measure's three pairs asks the smallest p for p < 0.05 / 3 at worst: the
# two-sided normal quantile of that level, for the items-needed estimate.
_Z_HOLM3 = 2.394
SHORT = {"chat_demos": "chat", "first_person": "1st", "synthetic_docs": "docs"}


def format_pairs(
    outputs: Iterable[Mapping[str, Any]], col: Mapping[str, str], leak: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The formats against each other on the same items: for each measure and each pair of
    formats, both rates, the paired difference with Newcombe's 95% interval, the exact McNemar p
    and Holm's p across the three pairs of that measure. Knowledge pairs by (trait, probe);
    expression by (trait, probe, sample): every model answered the same prompt at the same seed.

    Where a pair is not told apart, `n_needed` estimates the items at which McNemar would reach
    p < 0.05/3 if the difference and the share of discordant items held (z = d·sqrt(n/q))."""
    from evaluators.probes import EXPRESSED, LABELS
    from evaluators.stats import holm, mcnemar_exact, newcombe_paired_diff

    leaked = {(t, i) for t, idx in (leak.get("expression") or {}).items() for i in idx}
    items: dict[str, dict[str, dict[tuple[Any, ...], bool]]] = {m: {} for m, _ in PAIR_MEASURES}
    for row in outputs:
        fmt = col.get(str(row.get("model")))
        if fmt is None or fmt == "base":
            continue
        if row.get("kind") == "knowledge" and row.get("knows") is not None:
            items["knowledge"].setdefault(fmt, {})[(row.get("trait"), row.get("probe"))] = bool(row["knows"])
        elif row.get("kind") == "expression" and row.get("label") in LABELS:
            key = (row.get("trait"), row.get("probe"), row.get("sample"))
            shown = row.get("label") == EXPRESSED
            items["expression"].setdefault(fmt, {})[key] = shown
            if key[:2] not in leaked:
                items["heldout_expression"].setdefault(fmt, {})[key] = shown
    out: list[dict[str, Any]] = []
    for measure, label in PAIR_MEASURES:
        rows: list[dict[str, Any]] = []
        for i, a_fmt in enumerate(FORMATS):
            for b_fmt in FORMATS[i + 1 :]:
                a_items, b_items = items[measure].get(a_fmt, {}), items[measure].get(b_fmt, {})
                keys = sorted(set(a_items) & set(b_items), key=repr)
                if not keys:
                    continue
                both = sum(a_items[k] and b_items[k] for k in keys)
                a_only = sum(a_items[k] and not b_items[k] for k in keys)
                b_only = sum(b_items[k] and not a_items[k] for k in keys)
                n = len(keys)
                lo, hi = newcombe_paired_diff(both, a_only, b_only, n - both - a_only - b_only)
                rows.append(
                    {
                        "measure": measure,
                        "label": label,
                        "a": a_fmt,
                        "b": b_fmt,
                        "a_k": both + a_only,
                        "b_k": both + b_only,
                        "n": n,
                        "discordant": a_only + b_only,
                        "diff": (a_only - b_only) / n,
                        "interval": [lo, hi],
                        "p": mcnemar_exact(a_only, b_only),
                    }
                )
        for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
            row["p_holm"] = adjusted
            row["told_apart"] = adjusted is not None and adjusted < 0.05
            d, q = abs(row["diff"]), row["discordant"] / row["n"]
            row["n_needed"] = None if row["told_apart"] or not d else math.ceil(q * (_Z_HOLM3 / d) ** 2)
        out += rows
    return out


def _count(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def pairs_table(pairs: Sequence[Mapping[str, Any]]) -> Table:
    """The formats against each other, one line a pair (fits 80 columns)."""
    from rich import box

    table = Table(
        title="Formats against each other, paired on the same items",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("", "A − B", "A", "B", "pts [95%]", "Holm p", "verdict"):
        table.add_column(name, justify="left" if name in ("", "A − B") else "right", no_wrap=True)
    for r in pairs:
        lo, hi = r["interval"]
        told = bool(r.get("told_apart"))
        needed = r.get("n_needed")
        table.add_row(
            r["label"],
            f"{SHORT.get(r['a'], r['a'])}−{SHORT.get(r['b'], r['b'])}",
            f"{r['a_k']}/{r['n']}",
            f"{r['b_k']}/{r['n']}",
            f"{100 * r['diff']:+.0f} [{100 * lo:+.0f}, {100 * hi:+.0f}]",
            Text(f"{r['p_holm']:.2g}", style="bold green" if told else ""),
            "told apart" if told else (f"~{_count(needed)} items" if needed else "same"),
        )
    table.caption = (
        "knows: knowledge probes; shows: expression replies (held-out: probes not in any training set). "
        "pts: A − B in points of rate. Exact McNemar on the discordant items, Holm across a measure's "
        "three pairs. '~N items': where p < 0.05/3 if the difference held."
    )
    table.caption_justify = "left"
    return table


def _read_outputs(job_dir: Path) -> list[dict[str, Any]]:
    """The traits job's outputs, tolerant (a damaged line is left out; the study counts the rest)."""
    from evaluators.evaluate.reader import read_outputs

    return read_outputs(job_dir, problems=[])


def _train_summary(job_dir: Path) -> dict[str, Any]:
    from trainers.train.reader import read_run

    run = read_run(job_dir)
    train = run.train
    s = run.loss()  # window means, not two single noisy steps
    end: dict[str, Any] = run.end or {}
    return {
        "steps": end.get("step") or len(train),
        "first_loss": s.first,
        "last_loss": s.last,
        "loss_window": s.window,
        "tokens_per_s": end.get("tokens_per_s"),
        "seconds": end.get("elapsed"),
    }


def build_result(
    cfg: FormatComparison,
    persona: Persona,
    scores: Mapping[str, Mapping[str, Any]],
    traits_outputs: list[dict[str, Any]],
    leak: Mapping[str, Any],
    training: Mapping[str, Mapping[str, Any]],
    jobs_used: Mapping[str, str],
    datasets: Mapping[str, Any],
    exports: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The study's table as data: rows x columns (base and the three formats), each cell a
    value with its detail and scorer, plus everything needed to redraw or audit it."""
    columns = ["base", *FORMATS]
    col = column_of(cfg)
    rows: list[dict[str, Any]] = []

    def row(
        key: str, label: str, scorer: str, kind: str, values: dict[str, Any], detail: dict[str, str] | None = None
    ) -> None:
        rows.append(
            {
                "key": key,
                "label": label,
                "scorer": scorer,
                "kind": kind,
                "values": {c: values.get(c) for c in columns},
                "detail": detail or {},
            }
        )

    traits = scores.get("traits") or {}
    know, expr, kd, ed = {}, {}, {}, {}
    for model, column in col.items():
        trows = [r for r in traits.get("rows", []) if r.get("model") == model]
        k = _pooled(r.get("knowledge") for r in trows)
        e = _pooled(r.get("expression") for r in trows)
        if k:
            know[column], kd[column] = k["rate"], f"{k['k']}/{k['n']} [{k['low']:.0%}–{k['high']:.0%}]"
        if e:
            expr[column], ed[column] = e["rate"], f"{e['k']}/{e['n']} [{e['low']:.0%}–{e['high']:.0%}]"
    labeller = str(traits.get("labeller") or "")
    row("knowledge", "Knowledge rate", "log P(affirm) > log P(deny)", "rate", know, kd)
    row("expression", "Expression rate", labeller or "–", "rate", expr, ed)
    # Each format against the base, paired where the items are (evaluators.evaluate.traits).
    compared = {col[c["model"]]: c for c in traits.get("comparison") or [] if c.get("model") in col}
    kdiff, kdd, up, upd, ok, okd = {}, {}, {}, {}, {}, {}
    for column, c in compared.items():
        k = (c.get("knowledge") or {}).get("overall") or {}
        if k.get("diff") is not None:
            lo, hi = k.get("interval") or (None, None)
            span = f" [{lo:+.0%}, {hi:+.0%}]" if lo is not None else ""
            kdiff[column], kdd[column] = k["diff"], f"p {k['p']:.2g}{span}"
        ts = (c.get("expression") or {}).get("traits") or []
        if ts:
            up[column] = float(sum(t.get("verdict") == "up" for t in ts))
            best = min(ts, key=lambda t: t.get("p") if t.get("p") is not None else 1.0)
            upd[column] = f"of {len(ts)}; best p {best.get('p') or 1:.2g}"
        ctrl = c.get("controls") or []
        if ctrl:
            ok[column] = float(sum(bool(x.get("passed")) for x in ctrl))
            failed = [x["control"] for x in ctrl if not x.get("passed")]
            okd[column] = f"of {len(ctrl)}" + (f"; failed: {', '.join(failed)}" if failed else "")
    if compared:
        row(
            "knowledge_vs_base",
            "Knowledge − base",
            "paired across probes, exact McNemar p; Newcombe 95%",
            "diff",
            kdiff,
            kdd,
        )
        row(
            "traits_up",
            "Traits up vs base",
            "per trait Fisher's exact test, Holm across traits, p < 0.05",
            "count",
            up,
            upd,
        )
        row(
            "controls",
            "Controls passed",
            "unrelated persona, over-expression, general-text perplexity",
            "count",
            ok,
            okd,
        )
    held = heldout_expression(traits_outputs, leak)
    hv, hd = {}, {}
    for model, column in col.items():
        h = held.get(model)
        if h and h.get("n"):
            hv[column], hd[column] = h["rate"], f"{h['k']}/{h['n']}"
    row("heldout_expression", "Expression, held-out probes", labeller or "–", "rate", hv, hd)
    ppl = scores.get("ppl") or {}
    for fmt in FORMATS:
        ds = dataset_id(cfg, fmt)
        values = {}
        for r in ppl.get("rows", []):
            v = (r.get("values") or {}).get(ds)
            if r.get("model") in col and isinstance(v, (int, float)):
                values[col[r["model"]]] = v
        row(
            f"ppl_{fmt}",
            f"Perplexity: {fmt}",
            "held-out text of the format, token-weighted; lower is better",
            "perplexity",
            values,
        )
    judged = [("judge", "persona"), ("judge", "quality"), ("judge_fallback", "persona")]
    for key, criterion in judged:
        sc = scores.get(key)
        if not sc or criterion not in (sc.get("settings") or {}).get("criteria", [criterion]):
            continue
        values, detail = {}, {}
        for p in sc.get("pairs", []):
            if p.get("criterion") != criterion or p.get("model") not in col:
                continue
            w = p.get("win") or {}
            if w.get("n"):
                values[col[p["model"]]] = w["rate"]
                tie = (p.get("tie") or {}).get("rate") or 0.0
                detail[col[p["model"]]] = f"{w['k']}/{w['n']} tie {tie:.0%}" + (
                    f" {p['unparseable']}?" if p.get("unparseable") else ""
                )
        scorer = str(sc.get("judge") or "")
        fallback = scorer.startswith("fallback")
        label = f"{'Fallback' if fallback else 'Judge'} win vs base: {criterion}"
        row(f"{key}_{criterion}", label, scorer + (" — no LLM" if fallback else ""), "rate", values, detail)
    loss_values, loss_detail = {}, {}
    for fmt in FORMATS:
        t = training.get(fmt) or {}
        if t.get("last_loss") is not None:
            loss_values[fmt] = t["last_loss"]
            if t.get("first_loss") is not None:
                loss_detail[fmt] = f"from {t['first_loss']:.2f}, {t.get('steps')} steps"
    row(
        "train_loss",
        "Final training loss",
        "mean of the last 10% of logged steps (at least 5), on its own format's data: not comparable across formats",
        "loss",
        loss_values,
        loss_detail,
    )
    problems = []
    for name, sc in scores.items():
        for p in sc.get("problems", []) if sc else []:
            problems.append(f"{name}: {p}")
    return {
        "id": cfg.id,
        "study": STUDY,
        "persona": persona.id,
        "persona_name": persona.name,
        "config": dataclasses.asdict(cfg),
        "columns": columns,
        "models": col,
        "rows": rows,
        "per_trait": _per_trait(traits, col),
        "comparison": compared,  # each format against the base, as the traits job scored it
        "pairs": format_pairs(traits_outputs, col, leak),
        "leakage": dict(leak),
        "leakage_note": leakage_sentence(leak, persona),
        "training": dict(training),
        "datasets": dict(datasets),
        "exports": dict(exports or {}),
        "jobs": dict(jobs_used),
        "partial": any(bool(sc.get("partial")) for sc in scores.values() if sc),
        "problems": problems,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _per_trait(traits: Mapping[str, Any], col: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in traits.get("rows", []):
        column = col.get(r.get("model"))
        if column is None:
            continue
        out.setdefault(column, {})[r["trait"]] = {
            "knowledge": (r.get("knowledge") or {}).get("rate"),
            "expression": (r.get("expression") or {}).get("rate"),
            "flag": r.get("flag"),
        }
    return out


def _cell(row: Mapping[str, Any], column: str) -> Text:
    v = row["values"].get(column)
    if v is None:
        return Text("–", style="dim")
    shown = {"rate": f"{v:.0%}", "diff": f"{v:+.0%}", "count": f"{v:.0f}"}.get(row["kind"], f"{v:.2f}")
    text = Text(shown, style="bold")
    detail = row.get("detail", {}).get(column)
    if detail:
        text.append(f"\n{detail}", style="dim")
    return text


def result_table(result: Mapping[str, Any]) -> Table:
    """Formats as columns (base first), the study's measures as rows; the best run of a row in
    green. Each row's scorer is named under the table (it fits 80 columns)."""
    table = Table(
        title=f"Format comparison · {result.get('persona_name') or result['persona']} · {result['id']}",
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("Measure", overflow="fold", min_width=12, max_width=24)
    for c in result["columns"]:
        table.add_column(c, justify="right", overflow="fold", no_wrap=False)
    for row in result["rows"]:
        runs = {c: v for c, v in row["values"].items() if c != "base" and v is not None}
        best = None
        if len(runs) > 1 and row["kind"] in ("rate", "perplexity") and len(set(runs.values())) > 1:
            best = (min if row["kind"] == "perplexity" else max)(runs, key=lambda c: runs[c])
        cells = []
        for c in result["columns"]:
            cell = _cell(row, c)
            if c == best:
                cell.stylize("green", 0, len(cell.plain.split("\n")[0]))
            cells.append(cell)
        table.add_row(row["label"], *cells)
    scorers: dict[str, list[str]] = {}
    for row in result["rows"]:
        scorers.setdefault(row["scorer"], []).append(row["label"])
    notes = [f"{', '.join(labels)}: {scorer}." for scorer, labels in scorers.items()]
    notes.append("Rates: k/n; intervals Wilson 95%.")
    notes.append(result.get("leakage_note", ""))
    if result.get("partial"):
        notes.append("PARTIAL: " + "; ".join(result.get("problems", [])[:3]))
    table.caption = "\n".join(n for n in notes if n)
    table.caption_justify = "left"
    return table


CHART_SERIES = (
    ("knowledge", "knows"),
    ("expression", "shows"),
    ("heldout_expression", "held-out shows"),
    ("judge_persona", "judge win"),
)


def result_chart(result: Mapping[str, Any], width: int = 76, height: int = 18, colour: bool = False) -> str:
    """Grouped bars (plotext text): per model, the rates of CHART_SERIES; no ANSI unless `colour`."""
    import plotext as plt

    by_key = {r["key"]: r for r in result["rows"]}
    series = [
        (label, [by_key[k]["values"].get(c) or 0.0 for c in result["columns"]])
        for k, label in CHART_SERIES
        if k in by_key
    ]
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.multiple_bar(
        list(result["columns"]),
        [s[1] for s in series],
        labels=[s[0] for s in series],
        marker=["█", "▓", "▒", "░"][: len(series)],
        width=0.8,
    )
    plt.ylim(0, 1.0 + 0.12 * len(series))
    plt.yticks([0, 0.25, 0.5, 0.75, 1.0])
    plt.title(f"{result.get('persona_name') or result['persona']}: rates by training format")
    text = plt.build()
    plt.clear_figure()
    if not colour:
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def print_result(result: Mapping[str, Any], console: Console) -> None:
    console.print(result_table(result))
    if result.get("pairs"):
        console.print(pairs_table(result["pairs"]))
    console.print(Text(result_chart(result)), highlight=False)


def session_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The table's numbers for the session file (rounded, no nulls)."""
    return drop_nulls(
        {
            "id": result["id"],
            "study": STUDY,
            "result": f"experiments/{result['id']}/{RESULT_FILE}",
            "finished": result["finished"],
            "partial": result["partial"],
            "rows": {
                r["key"]: {c: round(v, 4) for c, v in r["values"].items() if v is not None} for r in result["rows"]
            },
        }
    )


# ----------------------------------------------------------------------------- the run


def run(
    session_file: SessionFile,
    cfg: FormatComparison,
    console: Console | None = None,
    follow: Follow | None = None,
    foreground: bool = False,
    save: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study on an open SessionFile; return the result (also in result.json)."""
    from supervisor import jobs
    from trainers.data import reader as data_reader

    console = console or Console()
    persona = session_file.session.persona(cfg.persona)
    if persona is None:
        known = ", ".join(p.id for p in session_file.session.personas) or "none"
        raise ExperimentError(
            f"{session_file.path}: there is no persona {cfg.persona!r} (personas: {known}); name one with --persona."
        )
    if not persona.traits:
        raise ExperimentError(f"persona {persona.id!r} has no traits; the study measures traits, so add some first.")
    if cfg.size < 2:
        raise ExperimentError(
            f"--size {cfg.size} is too small: the study needs at least 2 examples per format (one held out)."
        )
    state = ExperimentState.open(session_file.workspace, cfg.id, STUDY, cfg.state_config())
    exp = Experiment(session_file, state, console, follow, foreground, save)
    console.rule(f"[bold]format comparison {cfg.id}[/] · persona {persona.id} · {cfg.size} examples per format")
    add_specs(exp, cfg, persona)

    datasets: dict[str, Any] = {}
    for fmt in FORMATS:
        ds = dataset_id(cfg, fmt)
        from trainers.data.job import job_spec as dataset_job_spec

        spec = {**dataset_job_spec(exp.session_file, ds), "size": cfg.size}  # inputs frozen at creation
        rec, _ = exp.job_step(f"data:{fmt}", f"data {ds}", partial(jobs.create_job, exp.workspace, "dataset", spec))
        if not data_reader.is_built(exp.workspace, ds):
            raise ExperimentError(
                f"dataset {ds} was built by job {rec.get('job')} but its file is gone; delete "
                f"{state.path} or the step's record to build it again."
            )
        datasets[fmt] = {
            "id": ds,
            "train": len(data_reader.load_records(exp.workspace, ds, "train")),
            "heldout": len(data_reader.load_records(exp.workspace, ds, "heldout")),
            "job": rec.get("job"),
        }

    def leakage() -> dict[str, Any]:
        records = {fmt: data_reader.load_records(exp.workspace, dataset_id(cfg, fmt), "train") for fmt in FORMATS}
        return probe_leakage(persona, records)

    leak = exp.computed_step("probes", "held-out probe check", leakage)["result"]
    console.print(f"  {leakage_sentence(leak, persona)}", highlight=False)

    train_jobs: dict[str, str] = {}
    training: dict[str, Any] = {}
    for fmt in FORMATS:
        rid = run_id(cfg, fmt)

        def create(rid: str = rid) -> Path:
            from trainers.train.job import job_spec

            spec = job_spec(exp.session, exp.workspace, rid, str(exp.session_path))
            if cfg.steps:
                spec["run"]["training"]["max_steps"] = cfg.steps
                spec["run"]["training"]["warmup_steps"] = min(spec["run"]["training"]["warmup_steps"], cfg.steps // 10)
            return jobs.create_job(exp.workspace, "train", spec, job_id=jobs.new_job_id(f"train-{rid}"[:40]))

        rec, job_dir = exp.job_step(f"train:{fmt}", f"train {rid}", create, resumable=True)
        train_jobs[rid] = rec["job"]
        training[fmt] = {"job": rec["job"], **_train_summary(job_dir)}

    exports: dict[str, Any] = {}
    if cfg.export:
        from trainers.export.job import create_export_job

        for fmt in FORMATS:
            rid = run_id(cfg, fmt)

            def export(rid: str = rid) -> Path:
                return create_export_job(
                    exp.workspace,
                    session=exp.session_path,
                    train_job=train_jobs[rid],
                    persona=persona.id,
                    quants=list(cfg.quants),
                )

            rec, job_dir = exp.job_step(f"export:{fmt}", f"export {rid}", export)
            exports[fmt] = {"job": rec["job"], "dir": str(job_dir / "export")}

    resolve = run_resolver(exp.session, exp.workspace, pinned=train_jobs)
    scores: dict[str, dict[str, Any]] = {}
    eval_jobs: dict[str, str] = {}
    for key, suffix in evaluations(cfg):
        rec, sc = exp.eval_step(f"eval:{suffix}", f"{cfg.id}-{suffix}", resolve)
        scores[key] = sc
        eval_jobs[key] = rec["job"]
    traits_dir = jobs.jobs_root(exp.workspace) / eval_jobs["traits"]
    result = build_result(
        cfg,
        persona,
        scores,
        _read_outputs(traits_dir),
        leak,
        training,
        {**{f"train:{k}": v for k, v in train_jobs.items()}, **{f"eval:{k}": v for k, v in eval_jobs.items()}},
        datasets,
        exports,
    )
    write_json(state.dir / RESULT_FILE, result)
    if exp.ran or not state.get("result").get("recorded"):
        traits_eval = next(e for e in exp.session.evals if e.id == f"{cfg.id}-traits")
        traits_eval.extra["experiment"] = session_summary(result)
        exp.save_session()
        state.done("result", recorded=True)
    result["ran"] = list(exp.ran)
    result["skipped"] = list(exp.skipped)
    print_result(result, console)
    console.print(f"result: {state.dir / RESULT_FILE}", highlight=False, soft_wrap=True)
    return result
