"""The tools users already watch: a run's `report_to = "tensorboard"` leaves TensorBoard event
files in its job folder (read back with TensorBoard's own EventAccumulator), and `persona-tui jobs
SESSION --export-events ID --format csv|tensorboard` converts any job's events.jsonl."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessions import run_spec as rs
from sessions.manifest import read_manifest
from sessions.model import Session
from sessions.store import SessionFile
from supervisor import jobs
from train_fixtures import CHATS, events_of, make_session, tiny_run

BASE = "bundled:smollm2-135m-instruct"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},
    )


def read_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return out


def losses(job_dir: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in events_of(job_dir, "step") if isinstance(e.get("loss"), (int, float))]


# ----------------------------------------------------------------------------- the setting


def test_report_to_is_a_checked_setting_that_defaults_to_none():
    run = tiny_run("r", [])
    assert run.training.report_to == "none"
    run.training.report_to = "tensorbored"
    problems = rs.validate_run(run, Session(runs=[run]))
    assert any(
        "training.report_to is 'tensorbored'; choose one of none, tensorboard, wandb, tensorboard+wandb" in p
        for p in problems
    )
    assert rs.run_from_dict(rs.run_to_dict(run)).training.report_to == "tensorbored"  # round trip, then refused


def test_a_reporter_that_is_not_installed_is_refused_before_the_run(monkeypatch):
    import importlib.util

    from trainers.train.backends.hf import check, report_targets

    assert report_targets("tensorboard+wandb") == ["tensorboard", "wandb"] and report_targets("none") == []
    run = tiny_run("r", [])
    run.training.report_to = "wandb"
    missing = importlib.util.find_spec("wandb") is None
    problems = check(run)
    assert (
        any("training.report_to is 'wandb', but the wandb package is not installed" in p for p in problems) == missing
    )


# ----------------------------------------------------------------------------- converting any job


def _steps(job) -> None:
    """A real job (the protocol's worker side) writing the events a training run writes."""
    job.event(event="train_begin", run="r1", resumed_from=None)
    for step in range(1, 5):
        job.event(event="step", step=step, max_steps=4, loss=1.0 / step, lr=1e-3, tokens_per_s=100.0 + step)
    job.event(event="eval", step=4, eval_loss=0.5)


@pytest.fixture
def counted(tmp_path) -> tuple[Path, Path]:
    """A session and a finished job whose events.jsonl is shaped like a training run's."""
    sf = SessionFile.create(tmp_path / "s.toml", Session(name="s"))
    job = jobs.create_job(sf.workspace, "steps", {})
    assert jobs.run_job_inline(job, {"steps": _steps}).state == "finished"
    return sf.path, job


def test_csv_export_needs_no_torch_and_holds_every_value(counted, tmp_path):
    session, job = counted
    out = tmp_path / "out" / "events.csv"
    result = cli(str(session), "--export-events", job.name, "--format", "csv", "--out", str(out))
    assert result.returncode == 0 and f"wrote 13 values of {job.name} to {out}" in result.stdout, result.stderr
    rows = read_csv(out)
    assert rows["train/loss"] == [(i, 1.0 / i) for i in range(1, 5)]
    assert rows["train/tokens_per_s"] == [(i, 100.0 + i) for i in range(1, 5)]
    assert rows["eval/loss"] == [(4, 0.5)] and "train/max_steps" not in rows
    # The default place, beside the events; the conversion never imported torch.
    code = (
        "import sys; from trainers.train.event_export import export_events; "
        f"print(export_events({str(job)!r}, 'csv')[0]); assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == str(job / "events.csv"), done.stderr


def test_tensorboard_export_reads_back_with_tensorboards_reader(counted, tmp_path):
    pytest.importorskip("tensorboard")
    from trainers.train.event_export import read_tensorboard_scalars

    session, job = counted
    out = tmp_path / "tb"
    result = cli(str(session), "--export-events", job.name, "--format", "tensorboard", "--out", str(out))
    assert result.returncode == 0 and f"tensorboard --logdir {out}" in result.stdout, result.stderr
    scalars = read_tensorboard_scalars(out)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([1.0 / i for i in range(1, 5)], rel=1e-6)
    assert scalars["eval/loss"] == [(4, 0.5)]
    # Again into the same folder: refused rather than doubled; the default folder is replaced.
    again = cli(str(session), "--export-events", job.name, "--format", "tensorboard", "--out", str(out))
    assert again.returncode == 2 and "already holds TensorBoard event files" in again.stderr
    for _ in range(2):
        assert cli(str(session), "--export-events", job.name, "--format", "tensorboard").returncode == 0
    assert read_tensorboard_scalars(job / "tensorboard-export")["train/loss"] == scalars["train/loss"]


def test_a_job_with_nothing_to_convert_is_one_sentence(tmp_path):
    sf = SessionFile.create(tmp_path / "s.toml", Session(name="s"))
    job = jobs.create_job(sf.workspace, "note", {})
    result = cli(str(sf.path), "--export-events", job.name)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"job {job.name} has no step or eval events with numbers to convert." in result.stderr
    bad = cli(str(sf.path), "--export-events", job.name, "--format", "xls")
    assert bad.returncode == 2 and "invalid choice: 'xls'" in bad.stderr


# ----------------------------------------------------------------------------- a real run


@pytest.mark.slow
def test_a_run_with_report_to_tensorboard_leaves_event_files_in_its_job(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from trainers.train.event_export import read_tensorboard_scalars
    from trainers.train.job import create_train_job
    from trainers.worker import KINDS

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)  # the inline worker sets it for its run
    run = tiny_run("tb", ["chats"], max_steps=2, save_steps=2, report_to="tensorboard")
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    job_dir = create_train_job(sf, "tb")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error or jobs.log_tail(job_dir)

    logged = losses(job_dir)
    assert [s for s, _ in logged] == [1, 2]
    scalars = read_tensorboard_scalars(job_dir / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in logged], rel=1e-5)
    assert "train/learning_rate" in scalars

    # What made it: the bundled GGUF's and the data's own sha256, the seed, the settings.
    from engines.models import resolve_model

    m = read_manifest(job_dir)
    gguf = resolve_model(BASE).path
    assert m["kind"] == "train" and m["seed"] == run.training.seed
    assert m["models"]["base"]["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    data = sf.workspace / "datasets" / "chats.jsonl"
    assert m["datasets"]["chats"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert m["settings"]["run"]["training"]["report_to"] == "tensorboard"

    # The same run's events.jsonl converted: the CSV holds the very losses.
    out = tmp_path / "run.csv"
    assert cli(str(sf.path), "--export-events", job_dir.name, "--format", "csv", "--out", str(out)).returncode == 0
    assert read_csv(out)["train/loss"] == logged


@pytest.mark.anyio
async def test_the_train_form_offers_report_to_as_a_choice(tmp_path):
    from textual.widgets import Select

    from persona_tui.app import make_app
    from persona_tui.panes.train import TrainPane

    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-tabs").active = "train-settings"
        await pilot.pause()
        field = pane.query_one("#f-training-report_to", Select)
        assert field.value == "none"
        field.value = "tensorboard"
        await pilot.pause()
        assert app.session_file.session.run("r1").training.report_to == "tensorboard"
        assert "ready to start" in str(pane.query_one("#form-problems").render())
