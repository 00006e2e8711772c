"""The train stage's one reader: a training job's folder, as the worker leaves it, read back.

The folder is written the way the worker writes it (events through the job protocol's reporter,
checkpoints as transformers lays them out, result.json), without training: training itself is
covered by tests/test_train_lifecycle.py and test_train_cli.py, which read through the same reader.
"""

from __future__ import annotations

import json

from supervisor import jobs
from trainers.train import reader


def _train_job(tmp_path):
    job_dir = jobs.create_job(tmp_path / "ws", "train", {"run": {"id": "r"}})
    job = jobs.JobReporter(job_dir, jobs.read_spec(job_dir))
    job.event(event="train_begin", step=0)
    for step, loss in ((1, 3.0), (2, 2.5), (3, 2.0), (4, 1.5)):
        job.event(event="step", step=step, loss=loss)
    job.event(event="eval", step=4, eval_loss=2.2)
    job.event(event="train_begin", step=2, resumed_from=2)  # a resume replaces the steps after its checkpoint
    job.event(event="step", step=3, loss=1.9)
    job.event(event="train_end", step=3, s_per_step=0.5)
    return job_dir


def test_a_run_reads_back_as_loss_points_end_event_and_result(tmp_path):
    job_dir = _train_job(tmp_path)
    (job_dir / reader.RESULT_FILE).write_text(json.dumps({"run": "r", "state": "finished", "adapter": "x"}))
    run = reader.read_run(job_dir)
    assert run.train == [(1, 3.0), (2, 2.5), (3, 1.9)]
    assert run.evals == []  # the eval at step 4 was after the checkpoint the run resumed from
    assert run.end is not None and run.end["step"] == 3 and run.end["s_per_step"] == 0.5
    assert run.result == {"run": "r", "state": "finished", "adapter": "x"}
    assert run.loss().first is not None


def test_a_run_without_products_reads_as_empty_not_as_an_error(tmp_path):
    job_dir = jobs.create_job(tmp_path / "ws", "train", {"run": {"id": "r"}})
    run = reader.read_run(job_dir)
    assert (run.train, run.evals, run.end, run.result) == ([], [], None, None)
    (job_dir / reader.RESULT_FILE).write_text("[1, 2")  # cut short
    assert reader.read_result(job_dir) is None
    assert reader.adapter_dir(job_dir) is None


def test_an_adapter_counts_once_its_config_is_written(tmp_path):
    job_dir = jobs.create_job(tmp_path / "ws", "train", {})
    (job_dir / reader.ADAPTER_DIR).mkdir()
    assert reader.adapter_dir(job_dir) is None  # a folder the worker had just begun to write
    (job_dir / reader.ADAPTER_DIR / "adapter_config.json").write_text("{}")
    assert reader.adapter_dir(job_dir) == job_dir / reader.ADAPTER_DIR


def test_the_last_checkpoint_is_the_newest_whole_one(tmp_path):
    folder = reader.checkpoints_dir(jobs.create_job(tmp_path / "ws", "train", {}))
    for step, whole in ((2, True), (4, True), (6, False)):
        c = folder / f"{reader.CHECKPOINT_PREFIX}{step}"
        c.mkdir(parents=True)
        if whole:
            (c / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "notes").mkdir()
    assert [(s, ok) for s, _, ok in reader.checkpoints(folder)] == [(2, True), (4, True), (6, False)]
    assert reader.last_checkpoint(folder) == folder / "checkpoint-4"
    assert reader.checkpoint_step(folder / "checkpoint-x") is None
