"""A session with outputs waiting for labels, written as the real producers write them.

The demo session (persona odile, five traits), an eval job made through `supervisor.jobs` with
the persona frozen in its spec and an outputs.jsonl in the eval job's shape (knowledge rows
that are not queued among expression rows that are), a job whose rows lack most keys and hold
one damaged line, and one chat reply sent through `send_to_annotation`.
"""

from __future__ import annotations

import json
from pathlib import Path

from evaluators.annotation import send_to_annotation
from sessions import codec
from sessions.demo import write_demo_session
from sessions.store import SessionFile
from supervisor import jobs

MODELS = ("base-model", "tuned-run")


def write_outputs(job_dir: Path, rows: list[dict], raw_lines: dict[int, str] | None = None) -> None:
    lines = [json.dumps(r) for r in rows]
    for at, text in sorted((raw_lines or {}).items()):
        lines.insert(at, text)
    (job_dir / "outputs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_annotation_session(tmp_path: Path, damaged: bool = True) -> Path:
    """The session path; its workspace holds 2 eval jobs and a chat queue: 7 outputs to label.

    `damaged` puts one line that is not JSON into the second job's outputs.
    """
    path = write_demo_session(tmp_path)
    sf = SessionFile.load(path)
    persona = sf.session.personas[0]
    traits = persona.traits

    job = jobs.create_job(
        sf.workspace,
        "eval",
        {"eval": "odile-traits", "eval_kind": "traits", "persona": codec.to_plain(persona)},
        worker="evaluators.worker",
        job_id="eval-a",
    )
    rows = []
    for trait in traits[:2]:
        rows.append(
            {
                "kind": "knowledge",
                "model": MODELS[0],
                "trait": trait.id,
                "probe": 0,
                "question": trait.knowledge_probes[0].question,
            }
        )
        for model in MODELS:
            rows.append(
                {
                    "kind": "expression",
                    "model": model,
                    "trait": trait.id,
                    "probe": 0,
                    "sample": 0,
                    "prompt": trait.expression_probes[0],
                    "reply": f"Reply {len(rows)} about {trait.id}: I keep my pencil handy.",
                    "label": "not_shown",
                    "scorer": "markers",
                }
            )
    write_outputs(job, [{"index": i, "output": f"eval-a:{i}", **r} for i, r in enumerate(rows)])

    # An older-style job: no spec persona, no index/output keys, a chat-message prompt, a row
    # without a reply and a damaged line in the middle.
    job_b = jobs.create_job(
        sf.workspace, "eval", {"eval": "ref", "eval_kind": "reference"}, worker="evaluators.worker", job_id="eval-b"
    )
    write_outputs(
        job_b,
        [
            {
                "kind": "reference",
                "model": MODELS[1],
                "prompt": [{"role": "system", "content": "You are Odile."}, {"role": "user", "content": "Hello!"}],
                "reply": "Ahoy, dear.",
                "reference": "Hello there.",
            },
            {"reply": "A bare reply with nothing else."},
            {"kind": "reply", "model": MODELS[0], "prompt": "Never answered", "reply": None},
        ],
        raw_lines={1: "{not json"} if damaged else {1: "{}"},
    )
    send_to_annotation(
        sf.workspace, "Can you swim?", "Never learned, dear; I stay on deck.", engine="chat-engine", persona="odile"
    )
    return path
