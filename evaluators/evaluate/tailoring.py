"""Tailoring evaluation (kind "tailoring"): replies with and without the persona (or few-shot
examples) to the same prompts, judged pairwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.pairwise import generate_all, judge_pairs
from evaluators.evaluate.spec import ModelEntry
from evaluators.evaluate.state import Run
from sessions.jsonl import read_jsonl

if TYPE_CHECKING:
    from engines.base import Engine


def tailoring_input(prompt: str, persona: str | None) -> str:
    """The paper's template: `Prompt: [prompt]\\nPersona: [persona]\\nResponse:` (no persona line without one)."""
    return f"Prompt: {prompt}\nPersona: {persona}\nResponse:" if persona else f"Prompt: {prompt}\nResponse:"


def fewshot_prefix(path: str | Path, with_persona: bool) -> str:
    """Worked examples in the tailoring template, each ending in its chosen response (the paper's
    few-shot prompt-only baseline); the persona is the gold one where the row has it."""
    out = []
    for row in read_jsonl(path):
        prompt, chosen = str(row.get("prompt") or "").strip(), str(row.get("chosen") or "").strip()
        persona = str(row.get("chosen_persona_gold") or row.get("chosen_persona_retr") or "").strip()
        if prompt and chosen:
            out.append(f"{tailoring_input(prompt, persona if with_persona else None)} {chosen}\n\n")
    return "".join(out)


def run_tailoring(run: Run) -> None:
    s = run.settings
    path = s["data_path"]
    rows = read_jsonl(path)
    if s["samples"] > len(rows):
        run.note(f"samples = {s['samples']} asks for more rows than {path} holds ({len(rows)}); all are used.")
    if s["samples"]:
        rows = rows[: s["samples"]]
    items: list[dict[str, Any]] = []
    missing = 0
    for i, row in enumerate(rows):
        prompt = str(row.get("prompt") or "").strip()
        for group in ("chosen", "rejected"):
            persona = str(row.get(f"{group}_persona_{s['persona_field']}") or "").strip()
            if not prompt or not persona:
                missing += 1
                continue
            items.append({"prompt": prompt, "persona": persona, "group": group, "row": i, "kind": "tailoring"})
    if not items:
        run.job.fail(
            f"no row of {path} has a prompt and a {s['persona_field']} persona "
            f"(chosen_persona_{s['persona_field']} / rejected_persona_{s['persona_field']}); "
            'try persona_field = "retr" or "gold".'
        )
    if missing:
        run.problem(f"{missing} prompt/persona pairs of {path} lack a prompt or a persona and were skipped.")
    no_persona = set(s["no_persona"])
    fewshot = set(s.get("fewshot_models") or [])
    shots = {flag: fewshot_prefix(s["fewshot_path"], flag) for flag in (True, False)} if fewshot else {}
    for item in items:
        item["input_for"] = {
            m.label: (shots[m.label not in no_persona] if m.label in fewshot else "")
            + tailoring_input(item["prompt"], None if m.label in no_persona else item["persona"])
            for m in run.models
        }
    run.total = len(items) * len(run.models) + len(items) * (len(run.models) - 1) * len(s["criteria"])
    run.scores.update(
        data=path,
        persona_field=s["persona_field"],
        items=len(items),
        groups={g: sum(i["group"] == g for i in items) for g in ("chosen", "rejected")},
    )

    def ask(engine: Engine, entry: ModelEntry, item: dict[str, Any], k: int) -> str:
        text = engine.complete(
            item["input_for"][entry.label], **run.sampling(), seed=s["seed"] + k, stop=["\nPrompt:", "\nPersona:"]
        )
        return text.strip()

    replies = generate_all(run, items, ask)
    judge_pairs(run, items, replies, list(s["criteria"]), lambda item: item["persona"], groups=("chosen", "rejected"))
