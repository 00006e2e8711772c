"""The dataset job end to end through supervisor.jobs, and `persona-tui data` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessions.demo import demo_session
from sessions.model import DatasetSpec
from sessions.store import SessionFile
from supervisor import jobs
from trainers.data import reader as data_reader
from trainers.data.job import job_spec
from trainers.worker import KINDS


def _session(tmp_path: Path, *datasets: DatasetSpec) -> SessionFile:
    session = demo_session()
    session.datasets = [*session.datasets, *datasets]
    return SessionFile.create(tmp_path / "s.toml", session)


def _wait(job_dir: Path, timeout: float = 120) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.read_status(job_dir)
        if status.terminal:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_dir.name} did not end in {timeout} s: {jobs.log_tail(job_dir)}")


def test_dataset_job_in_a_detached_worker(tmp_path):
    spec = DatasetSpec(id="docs", format="synthetic_docs", persona="odile", size=150, extra={"token_stats": False})
    sf = _session(tmp_path, spec)
    before = sf.path.read_bytes()
    job_dir = jobs.create_job(sf.workspace, "dataset", job_spec(sf.path, "docs"))
    pid = jobs.start_job(job_dir)
    assert pid != os.getpid()
    status = _wait(job_dir)
    assert status.state == "finished", status.error + jobs.log_tail(job_dir)
    assert status.done == status.total == 150
    events, _ = jobs.read_events(job_dir)
    built = [e for e in events if e.get("event") == "dataset_built"]
    assert built and built[0]["count"] == 150 and built[0]["train"] == 135
    assert built[0]["stats_path"] == str(sf.workspace / "datasets" / "docs.stats.json")
    assert len(data_reader.load_records(sf.workspace, "docs")) == 135
    assert "wrote 135 training and 15 held-out examples" in jobs.log_tail(job_dir)
    assert sf.path.read_bytes() == before


def test_dataset_job_failure_is_the_builders_sentence(tmp_path):
    spec = DatasetSpec(id="spc", format="persona_chat", source="nowhere.csv", size=0)
    sf = _session(tmp_path, spec)
    job_dir = jobs.create_job(sf.workspace, "dataset", job_spec(sf.path, "spc"))
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert (
        status.error
        == f"The source file {sf.path.parent / 'nowhere.csv'} does not exist; check the dataset's source path."
    )
    with pytest.raises(ValueError, match="has no dataset 'ghost'"):
        job_spec(sf.path, "ghost")  # refused when the job is made, before any worker starts


def test_dataset_job_builds_the_inputs_frozen_at_creation(tmp_path):
    """The session in memory, unsaved, is what the job builds; later edits (saved or not) are not."""
    spec = DatasetSpec(id="fp", format="first_person", persona="odile", size=12, extra={"token_stats": False})
    sf = _session(tmp_path, spec)
    before = sf.path.read_bytes()
    sf.session.dataset("fp").size = 9  # not saved: the job must still build 9
    odile = sf.session.persona("odile")
    odile.traits = odile.traits[:1]
    job_dir = jobs.create_job(sf.workspace, "dataset", job_spec(sf, "fp"))
    assert sf.path.read_bytes() == before  # creating the job saved nothing
    # Edits after creation, even saved ones, do not reach the job.
    sf.session.dataset("fp").size = 30
    sf.save()
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error + jobs.log_tail(job_dir)
    stats = data_reader.read_stats(sf.workspace, "fp")
    assert stats["requested"] == 9 and stats["count"] <= 9
    assert set(stats["trait_coverage"]) == {odile.traits[0].id}
    assert jobs.read_spec(job_dir)["frozen"]["datasets"][0]["size"] == 9


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
    )


def test_cli_data_builds_in_the_foreground_and_prints_stats(tmp_path):
    spec = DatasetSpec(id="fp", format="first_person", persona="odile", size=80)
    sf = _session(tmp_path, spec)
    before = sf.path.read_bytes()
    done = _cli("data", str(sf.path), "--dataset", "fp", "--export", "hf")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "80 (72 train, 8 held out)" in out
    assert "distinct-2" in out and "near-duplicate pairs left" in out
    assert "under bundled:smollm2-135m-instruct" in out  # token lengths under the base tokenizer
    assert f"exported fp as hf to {sf.workspace / 'exports' / 'datasets' / 'fp-hf'}" in out
    assert sf.path.read_bytes() == before
    stats = json.loads((sf.workspace / "datasets" / "fp.stats.json").read_text())
    assert stats["count"] == 80
    listed = _cli("data", str(sf.path), "--list")
    assert listed.returncode == 0 and "80 examples" in listed.stdout and "odile-chat" in listed.stdout
    shown = _cli("data", str(sf.path), "--stats", "fp")
    assert shown.returncode == 0 and "72 train" in shown.stdout


def test_cli_data_detached_prints_the_job_id(tmp_path):
    spec = DatasetSpec(id="chat", format="chat_demos", persona="odile", size=60, extra={"token_stats": False})
    sf = _session(tmp_path, spec)
    done = _cli("data", str(sf.path), "--dataset", "chat", "--detach")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id.startswith("dataset-")
    assert f"persona-tui jobs {sf.path} --watch {job_id}" in done.stderr
    status = _wait(sf.workspace / "jobs" / job_id)
    assert status.state == "finished"
    assert data_reader.read_stats(sf.workspace, "chat")["count"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "has no dataset 'nope' (it has: odile-chat"),
        (["--dataset", "odile-chat", "--export", "csv"], "Export format 'csv' is unknown"),
        (["--stats", "odile-chat"], "has no statistics"),
    ],
)
def test_cli_data_bad_input(tmp_path, args, message):
    sf = _session(tmp_path)
    before = sf.path.read_bytes()
    done = _cli("data", str(sf.path), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert sf.path.read_bytes() == before
    assert not (sf.workspace / "jobs").exists() or not any((sf.workspace / "jobs").iterdir())
