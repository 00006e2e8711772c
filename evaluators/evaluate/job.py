"""The eval job (kind "eval"): run one evaluation of a session, keep every reply, score it.

    job_dir = create_eval_job(session_file, "odile-traits")   # spec frozen (evaluators.evaluate.spec)
    jobs.start_job(job_dir)                                  # python -m evaluators.worker <job_dir>
    ...
    scores = load_scores(job_dir); record_results(session_file, "odile-traits", job_dir)

The job writes, in its directory:
- `outputs.jsonl`: one line per reply or probe, written as it is produced: its `index` and
  `output` id ("<job-id>:<index>", what annotations point at), `kind` (reference | knowledge |
  expression | reply | pair | tailoring | perplexity | drift_turn), `model`, `prompt`, `reply`, the trait and
  probe ids where there are some, the `label` and the `scorer` that gave it, and per-output
  `metrics` (numbers that agreement.metric_agreement can rank against people's ratings);
- `scores.json`: the evaluation's result tables (see evaluators.tables), rewritten after each
  model, with `partial: true` and the reasons in `problems` when anything was left out
  (a model that failed to load, an engine without log-probabilities, a cancel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.pairwise import run_judge
from evaluators.evaluate.perplexity import run_perplexity_matrix
from evaluators.evaluate.reader import load_scores, summary
from evaluators.evaluate.reference import run_reference
from evaluators.evaluate.spec import build_job_spec
from evaluators.evaluate.state import Run
from evaluators.evaluate.tailoring import run_tailoring
from evaluators.evaluate.traits import run_traits

if TYPE_CHECKING:
    from sessions.store import SessionFile
    from supervisor.jobs import JobReporter

WORKER = "evaluators.worker"
JOB_KIND = "eval"


# ----------------------------------------------------------------------------- launching


def create_eval_job(session_file: SessionFile, eval_id: str, resolve: Any = None, job_id: str | None = None) -> Path:
    """Validate the evaluation, freeze its inputs and create a queued job (started by the caller)."""
    from supervisor import jobs

    spec = build_job_spec(session_file, eval_id, resolve)
    return jobs.create_job(session_file.workspace, JOB_KIND, spec, worker=WORKER, job_id=job_id)


def run_eval_inline(session_file: SessionFile, eval_id: str, resolve: Any = None) -> Path:
    """Create the job and run it in this process (the demo, experiments, tests); its directory.

    Raises ValueError with the job's one-sentence error if it fails; a cancelled job returns
    (its scores say partial).
    """
    from supervisor import jobs

    job_dir = create_eval_job(session_file, eval_id, resolve)
    status = jobs.run_job_inline(job_dir, {JOB_KIND: "evaluators.evaluate.job"})
    if status.state == "failed":
        raise ValueError(f"evaluation {eval_id!r} failed: {status.error}")
    return job_dir


def record_results(session_file: SessionFile, eval_id: str, job_dir: str | Path) -> dict[str, Any]:
    """Append the job's summary to the evaluation's `results` in the session and save it."""
    scores = load_scores(job_dir)
    spec = next((e for e in session_file.session.evals if e.id == eval_id), None)
    if spec is None:
        raise ValueError(f"{session_file.path}: there is no evaluation {eval_id!r} to record results for.")
    entry = {
        "job": Path(job_dir).name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "partial": bool(scores.get("partial")),
        "summary": summary(scores),
    }
    results = list(spec.extra.get("results") or [])
    results.append(entry)
    spec.extra["results"] = results
    session_file.save()
    return entry


def run_drift(run: Run) -> None:
    from evaluators.drift import run_drift as work

    work(run)


RUNNERS: dict[str, Callable[[Run], None]] = {
    "reference": run_reference,
    "traits": run_traits,
    "judge": run_judge,
    "tailoring": run_tailoring,
    "perplexity_matrix": run_perplexity_matrix,
    "drift": run_drift,
}


def run(job: JobReporter) -> None:
    """The work of an eval job: `supervisor.jobs.run_worker` calls this with the JobReporter."""
    kind = job.spec.get("eval_kind")
    if kind not in RUNNERS:
        job.fail(
            f"the job's eval_kind {kind!r} is not one of: {', '.join(RUNNERS)}; create the job with create_eval_job."
        )
    state = Run(job)
    from engines.models import resolve_model
    from sessions.manifest import write_manifest

    write_manifest(
        job,
        resolve=resolve_model,
        seed=state.settings.get("seed"),
        models={
            k: v
            for e in state.models
            for k, v in ((e.label, e.engine.model), (f"{e.label} adapter", e.engine.adapter))
            if v
        }
        | {"judge": ((job.spec.get("judge") or {}).get("engine") or {}).get("model")},
        datasets=[state.settings.get("data_path"), state.settings.get("fewshot_path")],
    )
    job.log(f"evaluation {job.spec.get('eval')!r} ({kind}) on {', '.join(state.scores['models'])}")
    try:
        RUNNERS[kind](state)
        unopened = [p for p in state.scores["problems"] if "could not be opened" in p]
        if state.models and len(unopened) == len(state.models):
            job.fail(unopened[0])
    finally:
        state.scores["ended"] = time.time()
        state.scores["seconds"] = round(state.scores["ended"] - state.scores["started"], 2)
        state.write_scores()
        state.close()
    job.event(event="scores", kind=kind, partial=state.scores["partial"], summary=_finite(summary(state.scores)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
