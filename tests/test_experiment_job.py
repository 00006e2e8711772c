"""The format study as one detached parent job (evaluators.experiments.job), as the Evaluate pane
starts it: every step a real job, the session file never written by the job, and what the app
records afterwards (the eval summaries and the study's table) found from the job's files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from evaluators.eval_queue import children_of, unrecorded_results
from evaluators.experiments.job import create_experiment_job, prepare_format_comparison, record_experiment
from experiment_fixtures import tiny_session
from sessions import jobs
from sessions.store import SessionFile

TINY = dict(steps=2, samples=1, perplexity_texts=2, judge_questions=1, max_tokens=16, judge="fallback", quants=[],
            export=False)


def _wait(job_dir: Path, timeout: float) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.read_status(job_dir)
        if status.terminal:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_dir.name} did not end in {timeout:g} s:\n{jobs.log_tail(job_dir, 30)}")
        time.sleep(0.5)


def test_prepare_refuses_what_cannot_run(tmp_path):
    sf = tiny_session(tmp_path)
    with pytest.raises(ValueError, match="at least 2 examples"):
        prepare_format_comparison(sf, "odile", 1)
    with pytest.raises(ValueError, match="no persona 'nobody'"):
        prepare_format_comparison(sf, "nobody", 10)
    assert not (sf.workspace / "experiments").exists()


@pytest.mark.slow
def test_the_study_runs_as_one_detached_job_and_leaves_the_session_to_the_app(tmp_path):
    sf = tiny_session(tmp_path)
    saves = []
    cfg = prepare_format_comparison(sf, "odile", 12, save=lambda: saves.append(sf.save()), **TINY)
    assert saves == [True]  # the specs, saved once through the caller's save
    before = sf.path.read_bytes()
    job_dir = create_experiment_job(sf, cfg)
    jobs.start_job(job_dir)
    status = _wait(job_dir, 900)
    assert status.state == "finished", status.error + jobs.log_tail(job_dir, 40)
    assert sf.path.read_bytes() == before  # the job never wrote the session file
    evals = [c["eval"] for c in children_of(job_dir)]
    assert set(evals) == {"odile-fc-traits", "odile-fc-ppl", "odile-fc-judge"}
    # What the app records when the job ends (or when it next opens): every eval's summary, the table.
    session = SessionFile.load(sf.path).session
    pending = unrecorded_results(session, sf.workspace)
    assert sorted(e for e, _ in pending) == sorted(evals)
    assert record_experiment(session, sf.workspace, job_dir)
    table = next(e for e in session.evals if e.id == "odile-fc-traits").extra["experiment"]
    assert table["id"] == "odile-fc" and table["rows"]
    assert not record_experiment(session, sf.workspace, job_dir)  # once
    assert "format comparison odile-fc" in jobs.log_tail(job_dir, 200)
