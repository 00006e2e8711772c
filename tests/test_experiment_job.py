"""The format study as one detached parent job (evaluators.experiments.job), as the Evaluate pane
starts it: its settings frozen in its spec, the eval jobs it runs named in its events, and what
the app records afterwards (the eval summaries and the study's table) found from the files."""

from __future__ import annotations

import io
import time

import pytest

from evaluators.evaluate.queue import children_of, unrecorded_results
from evaluators.experiments.job import (
    create_experiment_job,
    prepare_format_comparison,
    record_experiment,
)
from experiment_fixtures import tiny_session
from sessions.store import SessionFile
from supervisor import jobs

TINY = {
    "steps": 2,
    "samples": 1,
    "perplexity_texts": 2,
    "judge_questions": 1,
    "max_tokens": 16,
    "judge": "fallback",
    "quants": [],
    "export": False,
}


def test_prepare_refuses_what_cannot_run(tmp_path):
    sf = tiny_session(tmp_path)
    with pytest.raises(ValueError, match="at least 2 examples"):
        prepare_format_comparison(sf, "odile", 1)
    with pytest.raises(ValueError, match="no persona 'nobody'"):
        prepare_format_comparison(sf, "nobody", 10)
    assert not (sf.workspace / "experiments").exists()


def test_the_study_job_says_which_eval_jobs_it_ran_and_the_app_records_them(tmp_path):
    """The study job's follower (what `run` hands the study) mirrors a step's progress, passes on
    nothing when not cancelled, and names each eval job in child events; the app then records the
    eval's summary and the study's table from the files alone. (The whole study as a detached job
    is driven from the Evaluate pane's test; run to its end it takes minutes.)"""
    import json
    import threading

    from rich.console import Console

    from evaluators.experiments.job import _follower
    from evaluators.experiments.state import RESULT_FILE, experiment_dir

    sf = tiny_session(tmp_path)
    cfg = prepare_format_comparison(sf, "odile", 12, save=sf.save, **TINY)
    study = create_experiment_job(sf, cfg)
    spec = jobs.read_spec(study)
    assert spec["experiment"] == "odile-fc" and spec["settings"]["steps"] == 2 and spec["settings"]["size"] == 12
    child = jobs.create_job(sf.workspace, "eval", {"eval": "odile-fc-ppl"}, worker="evaluators.worker")
    release = threading.Event()

    def scoring(job):
        job.progress(1, 2, "model 1 of 2")
        release.wait(30)
        (job.dir / "scores.json").write_text(
            json.dumps(
                {"kind": "perplexity_matrix", "partial": False, "rows": [{"model": "base", "values": {"x": 7.5}}]}
            )
        )
        job.progress(2, 2, "done")

    def study_work(job):
        final = _follower(job)(child, "eval odile-fc-ppl", Console(file=io.StringIO()))
        job.event(event="followed", state=final.state)

    runner = threading.Thread(target=lambda: jobs.run_job_inline(child, {"eval": scoring}))
    runner.start()
    mirrored: list[str] = []

    def watch() -> None:  # the child waits until its progress shows in the study's status
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not mirrored:
            message = jobs.read_status(study).message
            if "model 1 of 2" in message:
                mirrored.append(message)
            time.sleep(0.05)
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert jobs.run_job_inline(study, {"experiment": study_work}).state == "finished"
    runner.join(30)
    watcher.join(30)
    assert jobs.read_status(child).state == "finished"
    assert mirrored and mirrored[0].startswith("eval odile-fc-ppl: running 1/2")
    events, _ = jobs.read_events(study)
    flow = [(e["event"], e.get("eval"), e.get("state")) for e in events if e.get("event", "").startswith("child_")]
    assert flow == [("child_started", "odile-fc-ppl", None), ("child_ended", "odile-fc-ppl", "finished")]
    assert children_of(study) == [{"eval": "odile-fc-ppl", "job": child.name}]
    session = SessionFile.load(sf.path).session
    assert [(e, d.name) for e, d in unrecorded_results(session, sf.workspace)] == [("odile-fc-ppl", child.name)]
    # The study's table, once its result.json exists.
    assert not record_experiment(session, sf.workspace, study)
    result = {
        "id": "odile-fc",
        "study": "format-comparison",
        "finished": "2026-12-03T08:00:00",
        "partial": False,
        "rows": [{"key": "knowledge", "values": {"chat_demos": 0.51234, "first_person": None}}],
    }
    (experiment_dir(sf.workspace, "odile-fc") / RESULT_FILE).write_text(json.dumps(result))
    assert record_experiment(session, sf.workspace, study)
    table = next(e for e in session.evals if e.id == "odile-fc-traits").extra["experiment"]
    assert table["rows"] == {"knowledge": {"chat_demos": 0.5123}} and table["result"].endswith("result.json")
    assert not record_experiment(session, sf.workspace, study)  # once
