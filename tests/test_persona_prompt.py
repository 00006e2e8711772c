"""One persona system prompt: Chat, the exported Modelfile and the scored prompt-only baseline
render the same text for the same persona (they once had two functions that disagreed)."""

from __future__ import annotations

import types
from pathlib import Path

from evaluators.evaluate.spec import build_job_spec
from evaluators.evaluate.state import Run
from persona_tui.conversation import persona_prompt
from sessions.demo import write_demo_session
from sessions.model import EvalSpec, persona_system_prompt
from sessions.store import SessionFile
from trainers.export.job import _persona_text


def test_chat_modelfile_and_scored_baseline_use_the_same_persona_prompt(tmp_path: Path):
    path = write_demo_session(tmp_path)
    sf = SessionFile.load(path)
    persona = sf.session.personas[0]
    sf.session.evals.append(
        EvalSpec(id="prompt-only", kind="traits", models=["bundled", "bundled+persona"], extra={"persona": persona.id})
    )
    sf.save()

    expected = persona_system_prompt(persona)
    assert expected.startswith(f"You are {persona.name}.")
    assert persona.traits[0].text.strip() in expected and persona.style.strip() in expected

    chat = persona_prompt(persona)
    modelfile = _persona_text({"persona": persona.id, "session": str(path)})
    frozen = build_job_spec(SessionFile.load(path), "prompt-only")
    job = types.SimpleNamespace(spec=frozen, dir=tmp_path, fail=lambda msg: (_ for _ in ()).throw(AssertionError(msg)))
    run = Run(job)
    plain, prompted = run.models
    scored = run.system_for(prompted)

    assert chat == modelfile == scored == expected
    assert run.system_for(plain) is None  # the plain model gets no system prompt
