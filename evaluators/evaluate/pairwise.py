"""Judged evaluation (kind "judge"): every model's replies against the first model's, per
criterion, both orders, by an LLM judge; `judge_pairs` and `generate_all` serve tailoring too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.spec import ModelEntry
from evaluators.evaluate.state import Run, close_engine

if TYPE_CHECKING:
    from engines.base import Engine


def judge_pairs(
    run: Run,
    items: list[dict[str, Any]],
    replies: dict[str, list[str | None]],
    criteria: list[str],
    persona_of: Callable[[dict[str, Any]], str],
    groups: tuple[str, ...] = (),
) -> None:
    """Every model after the first against the first, per criterion (and group), both orders."""
    from evaluators.judge import judge_pair, win_rates

    judge = run.open_judge()
    base = run.models[0].label
    run.scores.update(judge=judge.name, baseline=base, pairs=[])
    try:
        for entry in run.models[1:]:
            if entry.label not in replies or base not in replies:
                continue
            for criterion in criteria:
                results: list[tuple[dict[str, Any], Any]] = []
                for k, item in enumerate(items):
                    run.stop_if_cancelled()
                    mine, theirs = replies[entry.label][k], replies[base][k]
                    if mine is None or theirs is None:
                        continue
                    pr = judge_pair(judge, criterion, item["prompt"], mine, theirs, persona_of(item))
                    results.append((item, pr))
                    run.output(
                        kind="pair",
                        model=entry.label,
                        baseline=base,
                        criterion=criterion,
                        prompt=item["prompt"],
                        reply=mine,
                        reply_baseline=theirs,
                        group=item.get("group", ""),
                        label=pr.outcome,
                        scorer=pr.scorer,
                        consistent=pr.consistent,
                        first=pr.first.to_dict(),
                        second=pr.second.to_dict(),
                        metrics={"win": {"win": 1.0, "tie": 0.5, "loss": 0.0}.get(pr.outcome)},
                    )
                    run.tick(message=f"judging {entry.label} vs {base}: {criterion}")
                for group in ("", *groups):
                    chosen = [pr for item, pr in results if not group or item.get("group") == group]
                    rates = win_rates(chosen)
                    run.scores["pairs"].append(
                        {
                            "model": entry.label,
                            "baseline": base,
                            "criterion": criterion,
                            **({"group": group} if group else {}),
                            **rates.to_dict(),
                        }
                    )
                    if rates.unparseable:
                        run.problem(
                            f"the judge answered off-format twice for {rates.unparseable} of "
                            f"{len(chosen)} {criterion} pairs of {entry.label!r}"
                            + (f" ({group} persona)" if group else "")
                            + "; they are counted as unparseable, not scored."
                        )
                run.write_scores()
        if hasattr(judge, "stats"):
            run.scores["judge_stats"] = dict(judge.stats)
    finally:
        run.write_scores()
        close_engine(getattr(judge, "engine", None))


def generate_all(
    run: Run, items: list[dict[str, Any]], ask: Callable[[Any, ModelEntry, dict[str, Any], int], str]
) -> dict[str, list[str | None]]:
    replies: dict[str, list[str | None]] = {}
    for entry in run.models:
        engine = run.open(entry)
        if engine is None:
            run.tick(len(items))
            continue
        out: list[str | None] = []
        try:
            for k, item in enumerate(items):
                run.stop_if_cancelled()
                reply = ask(engine, entry, item, k)
                out.append(reply)
                run.output(
                    kind=item.get("kind", "reply"),
                    model=entry.label,
                    prompt=item["prompt"],
                    reply=reply,
                    sample=item.get("sample", 0),
                    group=item.get("group", ""),
                    model_input=item.get("input_for", {}).get(entry.label, ""),
                )
                run.tick(message=f"{entry.label}: reply {k + 1}/{len(items)}")
        finally:
            replies[entry.label] = out + [None] * (len(items) - len(out))
            close_engine(engine)
    return replies


def run_judge(run: Run) -> None:
    from evaluators.probes import chat_messages
    from sessions.model import persona_system_prompt

    s = run.settings
    persona = run.persona
    assert persona is not None, "create_eval_job freezes the persona of a judge evaluation"
    questions = list(s["questions"]) or list(dict.fromkeys(q for t in persona.traits for q in t.expression_probes))
    if s["limit"]:
        questions = questions[: s["limit"]]
    items = [
        {"prompt": q, "sample": j, "seed": s["seed"] + 1000 * i + j}
        for i, q in enumerate(questions)
        for j in range(s["samples"])
    ]
    run.total = len(items) * len(run.models) + len(items) * (len(run.models) - 1) * len(s["criteria"])
    run.scores.update(persona=persona.id, questions=len(questions))

    def ask(engine: Engine, entry: ModelEntry, item: dict[str, Any], k: int) -> str:
        return engine.chat(chat_messages(item["prompt"], run.system_for(entry)), **run.sampling(), seed=item["seed"])

    replies = generate_all(run, items, ask)
    card = persona_system_prompt(persona)
    judge_pairs(run, items, replies, list(s["criteria"]), lambda item: card)
