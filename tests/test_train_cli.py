"""`persona-tui train` as a person runs it: a subprocess on a tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import jobs
from train_fixtures import CHATS, make_session, tiny_run

CLI = [str(Path(sys.executable).with_name("persona-tui"))]


def _cli(*args, timeout=600):
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1")
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def test_train_refuses_an_invalid_run_naming_the_field(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"], batch_size=0)])
    proc = _cli("train", sf.path, "--run", "r1")
    assert proc.returncode == 2
    assert (
        "run 'r1': training.batch_size is 0; it must be \"auto\" or a whole number from 1 to 4096 (default 'auto')."
        in proc.stderr
    )
    assert not (sf.workspace / "jobs").exists()


@pytest.mark.slow
def test_train_in_the_foreground_prints_progress_a_loss_chart_and_the_adapter(tmp_path):
    sf = make_session(
        tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"], max_steps=3, save_steps=3)]
    )
    proc = _cli("train", sf.path, "--run", "r1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (job,) = jobs.list_jobs(sf.workspace)
    assert job.state == "finished" and job.kind == "train"
    out = proc.stdout
    assert f"job {job.id}" in out
    assert "train r1" in out  # the progress bar's label
    assert "loss" in out and "step" in out  # the text chart's title and axis
    assert "step 3, loss " in out and " s/step" in out and "tokens/s" in out
    # The loss as window means (of 3 logged steps: the first and the last), recomputed from the
    # events file the summary names.
    events = [json.loads(line) for line in (job.dir / "events.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e.get("event") == "step" and e.get("loss") is not None]
    assert len(losses) == 3
    assert f"loss {losses[0]:.4f} -> {losses[-1]:.4f} (mean of the first/last 1 of 3 logged steps)" in out
    assert f"loss from: {job.dir / 'events.jsonl'}" in out
    assert f"adapter: {job.dir / 'adapter'}" in out
    result = json.loads((job.dir / "result.json").read_text())
    assert result["state"] == "finished" and result["step"] == 3
