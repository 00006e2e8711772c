"""The demo's side-by-side chat: a persona rate over a fixed set of prompts and seeds, not one reply."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from evaluators.demo import QUICK, DemoContext, chat_prompts, persona_rate, stage_chat
from sessions.demo import demo_persona, write_demo_session
from sessions.store import SessionFile


def _trait(tid: str):
    return next(t for t in demo_persona().traits if t.id == tid)


def test_persona_rate_counts_replies_that_show_the_trait_with_its_direction() -> None:
    persona = demo_persona()
    bees, tea = _trait("keeps-bees"), _trait("tea-not-coffee")
    assert (
        persona_rate(
            persona,
            bees,
            "What are you doing this weekend?",
            ["Seeing to my hives; the honey is nearly ready.", "I will be at home.", "I have never kept bees."],
        )
        == 1
    )
    assert (
        persona_rate(
            persona,
            tea,
            "How do you start your mornings?",
            ["A strong cup of coffee.", "The kettle goes on for a pot of black tea."],
        )
        == 1
    )


def test_chat_prompts_are_a_fixed_set_per_trait_and_seed() -> None:
    persona = demo_persona()
    fixed = chat_prompts(persona, 2)
    assert len(fixed) == 2 * len(persona.traits)
    assert [(t.id, p, s) for t, p, s in fixed] == [(t.id, p, s) for t, p, s in chat_prompts(persona, 2)]
    assert {s for _, _, s in fixed} == {7, 8}
    assert all(p == t.expression_probes[0] for t, p, _ in fixed)


def test_chat_stage_reports_the_rate_for_both_models(tmp_path: Path, monkeypatch) -> None:
    """With the bundled model on both sides (same weights, prompts and seeds) the two rates must be
    equal; the stage prints one exchange and the rate line."""
    from engines.models import resolve_model

    gguf = Path(resolve_model("bundled:smollm2-135m-instruct").path)
    monkeypatch.setattr("evaluators.run_models.export_gguf", lambda workspace, job: gguf)
    out = io.StringIO()
    ctx = DemoContext(SessionFile.load(write_demo_session(tmp_path)), True, Console(file=out, width=120))
    ctx.results["train_job"] = str(tmp_path / "a-train-job")
    stage_chat(ctx)
    rate = ctx.results["chat_persona_rate"]
    assert rate["n"] == len(demo_persona().traits) * QUICK["chat_seeds"]
    assert rate["base"] == rate["fine_tuned"]
    assert any(isinstance(n, str) and n.startswith("persona rate in chat") for n in ctx.notes)
    assert ctx.made[-1][0] == "chat" and f"/{rate['n']} replies" in ctx.made[-1][1]
