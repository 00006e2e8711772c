"""Every job records what made it (sessions/manifest.py): real files hashed and cached, a real
dataset job's manifest, the differences that flag a comparison, and `persona-tui jobs --manifest
/ --compare` as a subprocess."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessions.demo import demo_session
from sessions.manifest import (
    MANIFEST_FILE,
    HashCache,
    build_manifest,
    hardware,
    job_differences,
    manifest_differences,
    manifest_summary,
    model_entry,
    read_manifest,
    source_jobs,
    write_manifest,
)
from sessions.model import DatasetSpec
from sessions.store import SessionFile
from supervisor import jobs
from trainers.worker import KINDS


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},
    )


# ----------------------------------------------------------------------------- the parts


def test_a_file_is_hashed_once_and_again_only_when_it_changes(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "one"}\n')
    store = tmp_path / "cache" / "sha256.json"
    first = HashCache(store)
    assert first.sha256(data) == sha(data) and first.hashed == 1
    first.save()
    again = HashCache(store)  # a later job: read from the cache file, not from the data
    assert again.sha256(data) == sha(data) and again.hashed == 0
    data.write_text('{"text": "two"}\n')  # same size, new contents and mtime
    os.utime(data, ns=(1, 1))
    assert again.sha256(data) == sha(data) and again.hashed == 1


def test_models_by_file_hash_hub_revision_or_name(tmp_path):
    from engines.models import resolve_model

    cache = HashCache(tmp_path / "c.json")
    bundled = resolve_model("bundled:smollm2-135m-instruct")
    gguf = model_entry(bundled, cache)
    assert gguf["name"] == "bundled:smollm2-135m-instruct" and gguf["kind"] == "file"
    assert gguf["sha256"] == sha(bundled.path) and gguf["bytes"] == bundled.path.stat().st_size
    # The same through a name and the resolver the jobs pass; the cache answers this time.
    hashed = cache.hashed
    assert model_entry("bundled:smollm2-135m-instruct", cache, resolve_model)["sha256"] == gguf["sha256"]
    assert cache.hashed == hashed

    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "hub" / "models--Org--Tiny" / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"_name_or_path": "Org/Tiny", "model_type": "llama"}))
    hub = model_entry(snap, cache)
    assert hub["repo"] == "Org/Tiny" and hub["revision"] == rev and hub["name_or_path"] == "Org/Tiny"
    assert "sha256" not in hub  # a Hub revision names the contents; nothing to read

    local = tmp_path / "merged"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"\0" * 64)
    before = model_entry(local, cache)["sha256"]
    (local / "model.safetensors").write_bytes(b"\1" * 64)
    assert model_entry(local, cache)["sha256"] != before

    assert model_entry("gpt-4o-mini", cache, resolve_model) == {"name": "gpt-4o-mini", "kind": "remote"}


def test_hardware_and_packages_are_this_machines(tmp_path, monkeypatch):
    m = build_manifest(cache=HashCache(tmp_path / "c.json"))
    assert m["packages"]["torch"] == importlib.metadata.version("torch")
    assert m["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    h = m["hardware"]
    flags = set(
        next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features")))
        .split(":", 1)[1]
        .split()
    )
    assert set(h["cpu_flags"]) <= flags and ("avx2" in flags) == ("avx2" in h["cpu_flags"])
    assert h["cores_logical"] == os.cpu_count() and h["ram_gib"] > 0
    assert m["project"].get("commit") or m["project"].get("version")


def test_gpus_come_from_nvidia_smi_when_there_is_one(tmp_path, monkeypatch):
    """nvidia-smi cannot run here (no GPU): a stand-in prints its documented CSV for two GPUs."""
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir()
    exe.write_text(
        "#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 81559, 550.54.15'\n"
        "echo '1, NVIDIA H100 80GB HBM3, 81559, 550.54.15'\n"
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    gpus = hardware()["gpus"]
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0] == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "550.54.15"}


# ----------------------------------------------------------------------------- differences


@pytest.fixture
def base_manifest(tmp_path) -> dict:
    data = tmp_path / "chats.jsonl"
    data.write_text('{"text": "hi"}\n')
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 60)
    return build_manifest(
        models={"base": model}, datasets={"chats": data}, seed=1, cache=HashCache(tmp_path / "c.json")
    )


def _copy(m: dict) -> dict:
    return json.loads(json.dumps(m))


def test_alike_manifests_have_no_differences_whatever_the_seed_or_settings(base_manifest):
    other = _copy(base_manifest)
    other.update(seed=2, settings={"lr": 1}, written="later")
    assert manifest_differences(base_manifest, other) == []
    assert manifest_differences(base_manifest, None) == []


def test_each_kind_of_difference_is_named(base_manifest):
    other = _copy(base_manifest)
    other["packages"]["torch"] = "2.12.0"
    other["packages"]["unsloth"] = "2026.10.9"
    other["models"]["base"]["sha256"] = "f" * 64
    other["datasets"]["chats"]["sha256"] = "e" * 64
    other["hardware"].update(
        cpu="Intel Xeon Platinum 8480+",
        cpu_flags=["avx2", "amx_bf16"],
        ram_gib=2000.0,
        gpus=[{"index": 0, "name": "NVIDIA H100", "memory_mib": 81559, "driver": "550"}],
    )
    lines = manifest_differences(base_manifest, other)
    text = "\n".join(lines)
    assert f"package torch {base_manifest['packages']['torch']} vs 2.12.0" in lines
    assert "package unsloth not installed vs 2026.10.9" in lines
    assert (
        f"model base ({base_manifest['models']['base']['name']}): sha256 "
        f"{base_manifest['models']['base']['sha256'][:12]} vs sha256 ffffffffffff" in lines
    )
    assert f"data chats: sha256 {base_manifest['datasets']['chats']['sha256'][:12]} vs sha256 eeeeeeeeeeee" in lines
    assert "CPU " in text and "vs Intel Xeon Platinum 8480+" in text
    assert "amx_bf16" in text and "RAM GiB" in text and "GPUs no GPU vs NVIDIA H100 80 GiB" in lines


def test_another_model_or_dataset_is_what_is_compared_not_a_difference(base_manifest):
    other = _copy(base_manifest)
    other["models"]["base"] = {"name": "Org/Other", "kind": "folder", "sha256": "1" * 64}
    other["datasets"]["first_person"] = {"path": "/x", "sha256": "2" * 64}
    assert manifest_differences(base_manifest, other) == []


# ----------------------------------------------------------------------------- real jobs


def _dataset_session(tmp_path: Path) -> SessionFile:
    session = demo_session()
    session.datasets = [
        *session.datasets,
        DatasetSpec(
            id="docs", format="synthetic_docs", persona="odile", size=12, seed=11, extra={"token_stats": False}
        ),
    ]
    return SessionFile.create(tmp_path / "s.toml", session)


def test_a_dataset_job_records_its_inputs_and_a_rerun_says_what_changed(tmp_path):
    from trainers.data.job import job_spec

    sf = _dataset_session(tmp_path)
    job_dir = jobs.create_job(sf.workspace, "dataset", job_spec(sf.path, "docs"))
    assert jobs.run_job_inline(job_dir, KINDS).state == "finished"
    m = read_manifest(job_dir)
    assert m["kind"] == "dataset" and m["job"] == job_dir.name and m["seed"] == 11
    assert m["settings"]["dataset"]["id"] == "docs" and m["settings"]["dataset"]["size"] == 12
    assert m["datasets"]["session"]["sha256"] == sha(sf.path)
    assert m["hardware"]["cores_logical"] == os.cpu_count()

    sf.session.personas[0].name = "Odile B."  # the session the rerun reads has changed
    sf.save()
    jobs.requeue_job(job_dir)
    assert jobs.run_job_inline(job_dir, KINDS).state == "finished"
    events, _ = jobs.read_events(job_dir)
    changed = [e for e in events if e.get("event") == "manifest_changed"]
    assert len(changed) == 1 and any(d.startswith("data session: sha256") for d in changed[0]["differences"])
    assert (
        json.loads((job_dir / (MANIFEST_FILE + ".bak")).read_text())["datasets"]["session"]["sha256"]
        == m["datasets"]["session"]["sha256"]
    )


def test_cli_prints_compares_and_refuses_in_one_sentence(tmp_path):
    from engines.models import resolve_model

    sf = _dataset_session(tmp_path)
    made = []
    for _ in range(2):
        job_dir = jobs.create_job(sf.workspace, "note", {"what": "a job that only records"})
        write_manifest(job_dir, models={"base": "bundled:smollm2-135m-instruct"}, seed=5, resolve=resolve_model)
        made.append(job_dir)
    a, b = made
    summary = cli(str(sf.path), "--manifest", a.name)
    assert summary.returncode == 0, summary.stderr
    assert "model base: bundled:smollm2-135m-instruct (sha256 " in summary.stdout and "seed 5" in summary.stdout
    whole = cli(str(sf.path), "--manifest", a.name, "--json")
    assert json.loads(whole.stdout) == read_manifest(a)

    alike = cli(str(sf.path), "--compare", a.name, b.name)
    assert alike.returncode == 0 and "same packages" in alike.stdout
    other = read_manifest(b)
    other["packages"]["transformers"] = "9.99.0"  # a version no lock names
    (b / MANIFEST_FILE).write_text(json.dumps(other))
    differs = cli(str(sf.path), "--compare", a.name, b.name)
    assert differs.returncode == 1
    assert f"differs: {b.name} vs {a.name}: package transformers " in differs.stdout and "vs 9.99.0" in differs.stdout

    bare = jobs.create_job(sf.workspace, "note", {})
    refused = cli(str(sf.path), "--manifest", bare.name)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"job {bare.name} has no manifest.json" in refused.stderr
    assert "no manifest" in cli(str(sf.path), "--compare", a.name, bare.name).stdout


def test_an_eval_finds_the_training_jobs_behind_its_models_and_flags_them(tmp_path):
    workspace = tmp_path / "ws"
    trains = []
    for torch_version in ("2.13.0", "2.12.0"):
        d = jobs.create_job(workspace, "train", {"run": {"id": "r"}})
        (d / "adapter").mkdir()
        m = build_manifest(cache=HashCache(tmp_path / "c.json"))
        m["packages"]["torch"] = torch_version
        (d / MANIFEST_FILE).write_text(json.dumps(m))
        trains.append(d)
    spec = {
        "models": [
            {"label": f"job:{d.name}", "engine": {"model": "bundled:x", "adapter": str(d / "adapter")}} for d in trains
        ]
    }
    ev = jobs.create_job(workspace, "eval", spec, worker="evaluators.worker")
    assert source_jobs(ev, jobs.read_spec(ev)) == trains
    assert job_differences(trains) == [f"{trains[1].name} vs {trains[0].name}: package torch 2.13.0 vs 2.12.0"]

    from evaluators.results import ResultEntry
    from persona_tui.panes.evaluate import provenance

    entry = ResultEntry(f"job:{ev.name}", "eval", "traits", 0.0, "finished")
    text = "\n".join(str(getattr(p, "plain", p)) for p in provenance(entry, None, workspace))
    assert "the compared models were not made alike" in text and "package torch 2.13.0 vs 2.12.0" in text
    assert "no manifest" in text  # the eval job itself never ran here


def test_summary_names_commit_packages_models_data_seed_and_machine(base_manifest):
    lines = manifest_summary(base_manifest)
    assert lines[0].startswith("persona-tui") and "torch " in lines[1]
    assert any(line.startswith("model base: ") and "sha256" in line for line in lines)
    assert any(line.startswith("data chats: sha256 ") for line in lines) and "seed 1" in lines
    assert lines[-1] == "no GPU" or "GiB" in lines[-1]


# ----------------------------------------------------------------------------- shown in the panes


def _finished_train_job(sf: SessionFile, job_id: str, torch_version: str | None = None) -> Path:
    """A training job through the protocol whose work writes its manifest (as train_job does) and steps."""
    from engines.models import resolve_model

    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id=job_id)

    def work(job):
        write_manifest(
            job,
            models={"base": "bundled:smollm2-135m-instruct"},
            resolve=resolve_model,
            seed=3407,
            datasets={"chats": sf.workspace / "datasets" / "chats.jsonl"},
        )
        (job.dir / "adapter").mkdir()
        job.event(event="train_begin", run="r1", resumed_from=None)
        job.event(event="step", step=1, max_steps=1, loss=2.0)
        job.progress(1, 1)

    assert jobs.run_job_inline(job_dir, {"train": work}).state == "finished"
    if torch_version:  # made on another machine: only its manifest says so
        m = read_manifest(job_dir)
        m["packages"]["torch"] = torch_version
        (job_dir / MANIFEST_FILE).write_text(json.dumps(m))
    return job_dir


def rendered(static) -> str:
    """What a Static shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


@pytest.mark.anyio
async def test_train_pane_shows_the_record_flags_a_compared_job_and_opens_the_whole(tmp_path):
    from textual.widgets import DataTable, Static

    from persona_tui.app import make_app
    from persona_tui.panes.train import TrainPane
    from persona_tui.screens.report import ReportScreen
    from train_fixtures import CHATS, make_session, tiny_run
    from waiting import wait_until

    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    first = _finished_train_job(sf, "train-20261201-101500-aaaa")
    second = _finished_train_job(sf, "train-20261201-111500-bbbb", torch_version="2.12.0")
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        table = pane.query_one("#job-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="both jobs listed")
        table.focus()
        table.move_cursor(row=0)
        await wait_until(
            pilot,
            lambda: pane.selected_job == first.name and pane.manifests.get(first.name),
            what="the first job's manifest",
        )
        pane.query_one("#train-tabs").active = "train-record"
        await pilot.pause()
        record = lambda: str(pane.query_one("#record", Static).render())  # noqa: E731
        assert first.name in record() and "model base: bundled:smollm2-135m-instruct (sha256 " in record()
        assert "seed 3407" in record() and "data chats: sha256 " in record()
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("space")  # overlay the second job: it was made with another torch
        table.move_cursor(row=0)
        await wait_until(
            pilot, lambda: f"⚠ {second.name} differs: package torch" in record(), what="the compared job flagged"
        )
        assert "vs 2.12.0" in record()
        await pilot.press("i")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReportScreen) and screen.report_title == f"What made {first.name}"
        shown = rendered(screen.query_one("#report-content", Static))
        assert '"sha256"' in shown and '"cpu_flags"' in shown


@pytest.mark.anyio
async def test_evaluate_pane_flags_models_trained_alike_or_not(tmp_path):
    from textual.widgets import Static

    from persona_tui.app import make_app
    from persona_tui.panes.evaluate import EvaluatePane
    from persona_tui.screens.report import ReportScreen
    from train_fixtures import CHATS, make_session, tiny_run

    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    a = _finished_train_job(sf, "train-20261201-101500-aaaa")
    b = _finished_train_job(sf, "train-20261201-111500-bbbb", torch_version="2.12.0")
    models = [
        {
            "label": f"job:{d.name}",
            "engine": {"id": d.name, "kind": "transformers", "model": "bundled:x", "adapter": str(d / "adapter")},
        }
        for d in (a, b)
    ]
    ev = jobs.create_job(
        sf.workspace, "eval", {"eval": "e", "eval_kind": "traits", "models": models}, worker="evaluators.worker"
    )
    assert jobs.run_job_inline(ev, {"eval": lambda job: write_manifest(job, seed=0)}).state == "finished"
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        pane.refresh_history()
        pane.show(f"job:{ev.name}")
        await pilot.pause()
        tables = pane.query_one("#result-tables", Static).content
        text = "\n".join(str(getattr(p, "plain", p)) for p in tables.renderables)
        assert "the compared models were not made alike" in text
        assert f"{b.name} vs {a.name}: package torch" in text and "made with: persona-tui" in text
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        shown = rendered(app.screen.query_one("#report-content", Static))
        assert ev.name in shown and a.name in shown and b.name in shown and '"packages"' in shown


def test_an_experiments_training_runs_are_compared_too(tmp_path):
    from evaluators.results import ResultEntry
    from persona_tui.panes.evaluate import provenance

    workspace = tmp_path / "ws"
    made = []
    for flags in (["avx2", "amx_bf16"], ["avx2"]):
        d = jobs.create_job(workspace, "train", {"run": {"id": "r"}})
        m = build_manifest(cache=HashCache(tmp_path / "c.json"))
        m["hardware"]["cpu_flags"] = flags
        (d / MANIFEST_FILE).write_text(json.dumps(m))
        made.append(d)
    result = {
        "study": "format-comparison",
        "jobs": {"train:chat_demos": made[0].name, "train:first_person": made[1].name, "eval:traits": "eval-gone"},
    }
    entry = ResultEntry("exp:odile-fc", "odile-fc", "format-comparison", 0.0, "finished")
    text = "\n".join(str(getattr(p, "plain", p)) for p in provenance(entry, result, workspace))
    assert f"{made[1].name} vs {made[0].name}: CPU flags only in the first: amx_bf16" in text
