"""Trait evaluation (kind "traits"): knowledge probes by log-probability, expression by labelled
replies, the controls (over-expression, general ability), and each run against the base.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.spec import ModelEntry
from evaluators.evaluate.state import Run, cannot_score, close_engine, model_lanes

if TYPE_CHECKING:
    from engines.base import Engine
    from evaluators.probes import ExpressionCell, KnowledgeCell
    from sessions.model import Persona


def _model_file(model: str) -> str:
    """The file name a model reference resolves to, so that `bundled:smollm2-135m-instruct` and
    the path of the GGUF it names compare equal (they are one file); the name itself where it
    does not resolve."""
    from engines.models import resolve_model

    try:
        return resolve_model(model).path.name
    except Exception:  # an unresolvable name is compared as written; the engine reports it
        return Path(model).name


def same_scoring(run: Run) -> None:
    """Base and run through the same engine and quantisation: a run resolved to its exported
    merged GGUF (q8_0) is scored as the base GGUF plus the export's LoRA GGUF instead, when the
    base entry is that same GGUF in llama.cpp; otherwise the difference is stated in the notes."""
    from sessions.model import EngineSpec

    if len(run.models) < 2:
        return
    base = run.models[0].engine
    for entry in run.models[1:]:
        eng = entry.engine
        if (eng.kind, eng.model) == (base.kind, base.model):
            continue  # the same engine and weights; an adapter on top is what is measured
        lora = Path(eng.model).parent / "adapter-f16.gguf"
        if eng.kind == base.kind == "llamacpp" and not base.adapter and lora.is_file():
            from trainers.export.reader import report_beside

            trained_on = str(report_beside(eng.model).get("base_model") or "")  # the export's base model
            if trained_on and trained_on == base.model:
                entry.engine = EngineSpec(**{**dataclasses.asdict(eng), "model": base.model, "adapter": str(lora)})
                run.note(
                    f"{entry.label} is scored as {base.model} + its LoRA GGUF ({lora.name}), the base's "
                    f"engine and quantisation, not its merged export {Path(eng.model).name}."
                )
                continue
        if eng.kind != base.kind or _model_file(eng.model) != _model_file(base.model):
            run.note(
                f"{entry.label} ({eng.kind}: {Path(eng.model).name}) and the base {run.models[0].label} "
                f"({base.kind}: {Path(base.model).name}) are not scored through the same engine and "
                "quantisation; part of any difference may be that."
            )


def run_traits(run: Run) -> None:
    from evaluators import controls
    from evaluators.probes import MarkerLabeller, expression_cells, knowledge_cells, trait_rows

    s = run.settings
    persona = run.persona
    assert persona is not None, "create_eval_job freezes the persona of a traits evaluation"
    same_scoring(run)
    with_controls = bool(s.get("controls")) and len(run.models) >= 2
    other = controls.unrelated_persona() if with_controls else None
    n_know = sum(len(t.knowledge_probes) for t in persona.traits) if s["knowledge"] else 0
    n_expr = sum(len(t.expression_probes) for t in persona.traits) * s["samples"] if s["expression"] else 0
    n_ctrl = (
        (sum(len(t.knowledge_probes) for t in other.traits) + len(controls.NEUTRAL_PROMPTS) * s["neutral_samples"] + 1)
        if other
        else 0
    )
    run.total = (n_know + n_expr + n_ctrl) * len(run.models)
    no_probes = [t.id for t in persona.traits if not t.knowledge_probes and not t.expression_probes]
    if no_probes:
        run.problem(f"trait(s) {', '.join(no_probes)} of persona {persona.id!r} have no probes and are not measured.")
    if s.get("controls") and len(run.models) < 2:
        run.note("controls need a base to compare with; name the base model first and the run after it.")
    labeller: Any = None
    if s["expression"]:
        if s["labeller"] == "judge":
            labeller = run.open_judge()
        elif s["labeller"] == "fallback":
            from evaluators.fallback import FallbackScorer

            labeller = FallbackScorer()
        else:
            labeller = MarkerLabeller()
    traits = [t.id for t in persona.traits]
    run.scores.update(
        persona=persona.id,
        traits=traits,
        labeller=getattr(labeller, "name", ""),
        headline_scorer=s["labeller"] if s["expression"] else "",
        knowledge_by=s["knowledge_by"],
        base=run.models[0].label if run.models else "",
        engines={
            m.label: {"kind": m.engine.kind, "model": m.engine.model, "adapter": m.engine.adapter} for m in run.models
        },
        rows=[],
    )
    per_model: dict[str, dict[str, Any]] = {}  # label -> its cells, merged in model order at the end

    def score(entry: ModelEntry, stopping: threading.Event) -> None:
        got: dict[str, Any] = {"k": [], "e": [], "ctrl_k": [], "ctrl_n": [], "ppl": {}}
        per_model[entry.label] = got
        engine = run.open(entry)
        if engine is None:
            run.tick(n_know + n_expr + n_ctrl)
            return
        system = run.system_for(entry)
        try:
            if s["knowledge"]:

                def on_k(cell: KnowledgeCell) -> None:
                    run.output(
                        **cell.to_dict(),
                        prompt=cell.question,
                        prompt_system=bool(system),
                        metrics={"logp_margin": cell.logp_affirm - cell.logp_deny},
                    )
                    run.tick(message=f"{entry.label}: knowledge {cell.trait}")

                try:
                    got["k"] = knowledge_cells(
                        engine, persona, entry.label, system, s["knowledge_by"], entry.engine.model, on_cell=on_k
                    )
                except Exception as e:  # noqa: BLE001
                    if not cannot_score(e):
                        raise
                    run.problem(
                        f"model {entry.label!r} offers no log-probabilities ({e}); its knowledge probes are left out."
                    )
                    run.tick(n_know)
            run.stop_if_cancelled()
            if s["expression"]:

                def on_e(cell: ExpressionCell) -> None:
                    run.output(
                        **cell.to_dict(),
                        prompt_system=bool(system),
                        metrics={"expressed": 1.0 if cell.label == "expressed" else 0.0},
                    )
                    run.tick(message=f"{entry.label}: expression {cell.trait}")

                got["e"] = expression_cells(
                    engine,
                    persona,
                    entry.label,
                    labeller,
                    s["samples"],
                    system,
                    run.sampling(),
                    seed=s["seed"],
                    on_cell=on_e,
                    should_stop=lambda: run.job.cancelled or stopping.is_set(),
                )
            run.stop_if_cancelled()
            if other is not None:
                _control_cells(run, engine, entry, other, persona, system, got["ctrl_k"], got["ctrl_n"], got["ppl"])
        finally:
            rows = trait_rows(traits, got["k"], got["e"], entry.label)
            with run.lock:
                run.scores["rows"].extend(r.to_dict() for r in rows)
                if hasattr(labeller, "stats"):
                    run.scores["judge_stats"] = dict(labeller.stats)
                run.write_scores()
            close_engine(engine)

    try:
        run.each_model(score, model_lanes(run.models))
    finally:
        close_engine(getattr(labeller, "engine", None))
        got_all = [per_model[m.label] for m in run.models if m.label in per_model]
        ppl: dict[str, float] = {}
        for g in got_all:
            ppl.update(g["ppl"])
        _compare_traits(
            run,
            traits,
            [c for g in got_all for c in g["k"]],
            [c for g in got_all for c in g["e"]],
            [c for g in got_all for c in g["ctrl_k"]],
            [c for g in got_all for c in g["ctrl_n"]],
            ppl,
        )
        run.write_scores()


def _control_cells(
    run: Run,
    engine: Engine,
    entry: ModelEntry,
    other: Persona,
    persona: Persona,
    system: str | None,
    ctrl_k: list,
    ctrl_n: list,
    ppl: dict[str, float],
) -> None:
    """The three controls' measurements for one model (see evaluators.controls)."""
    from evaluators import controls
    from evaluators.probes import knowledge_cells

    s = run.settings

    def on_k(cell: KnowledgeCell) -> None:
        run.output(**{**cell.to_dict(), "kind": "control_knowledge"}, prompt=cell.question)
        run.tick(message=f"{entry.label}: control, unrelated persona")

    try:
        ctrl_k += knowledge_cells(
            engine, other, entry.label, system, s["knowledge_by"], entry.engine.model, on_cell=on_k
        )
    except Exception as e:  # noqa: BLE001
        if not cannot_score(e):
            raise
    run.stop_if_cancelled()

    def on_n(cell: dict[str, Any]) -> None:
        run.output(**cell)
        run.tick(message=f"{entry.label}: control, neutral prompts")

    ctrl_n += controls.over_expression_cells(
        engine,
        persona,
        entry.label,
        run.sampling(),
        samples=s["neutral_samples"],
        seed=s["seed"],
        system=system,
        on_cell=on_n,
    )
    try:
        ppl[entry.label], tokens = controls.text_perplexity(engine)
        run.output(
            kind="control_perplexity",
            model=entry.label,
            prompt="",
            reply="",
            scorer="logprob",
            metrics={"perplexity": ppl[entry.label], "tokens": tokens},
        )
    except Exception as e:  # noqa: BLE001
        if not cannot_score(e):
            raise
    run.tick(message=f"{entry.label}: control, general text")


def _compare_traits(
    run: Run, traits: list[str], all_k: list, all_e: list, ctrl_k: list, ctrl_n: list, ppl: dict[str, float]
) -> None:
    """Every model after the first against the first (the base): knowledge (McNemar), expression
    (Fisher + Holm) and, when run, the three controls."""
    from evaluators import controls
    from evaluators.probes import expression_comparison, knowledge_comparison

    s = run.settings
    if len(run.models) < 2:
        return
    base = run.models[0].label
    out = []
    for entry in run.models[1:]:
        cmp: dict[str, Any] = {"model": entry.label, "base": base}
        if all_k:
            cmp["knowledge"] = knowledge_comparison(all_k, entry.label, base, traits)
        if all_e:
            cmp["expression"] = expression_comparison(all_e, entry.label, base, traits)
        if s.get("controls"):
            cmp["controls"] = [
                controls.unrelated(ctrl_k, entry.label, base, s["unrelated_margin"]),
                controls.over_expression(ctrl_n, entry.label, base, s["over_margin"]),
                controls.ability(ppl, entry.label, base, s["ability_bound"]),
            ]
        out.append(cmp)
    run.scores["comparison"] = out
