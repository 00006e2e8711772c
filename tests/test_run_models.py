"""One model-reference grammar and resolver (evaluators.run_models): evaluations, the demo, the
experiments and chat turn `base`, `run:ID`, a bare run id, `job:ID` and `export:ID[:TYPE]` into
the same engine. Jobs are made through the real job protocol (run inline); their work writes what
a training job and an export job leave on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.evaluate.spec import build_job_spec
from evaluators.run_models import run_resolver
from persona_tui.conversation import EngineRefError, engine_from_ref
from sessions.demo import write_demo_session
from sessions.store import SessionFile
from supervisor import jobs


def train_work(job) -> None:
    adapter = Path(job.dir) / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")


def export_work(job) -> None:
    out = Path(job.dir) / "export"
    out.mkdir()
    files = []
    for gtype in ("f16", "q8_0"):
        (out / f"model-{gtype}.gguf").write_bytes(b"GGUF")
        files.append({"kind": "gguf", "type": gtype, "path": f"export/model-{gtype}.gguf"})
    (out / "adapter-f16.gguf").write_bytes(b"GGUF")
    files.append({"kind": "lora", "type": "f16", "path": "export/adapter-f16.gguf", "base_gguf": "/models/base.gguf"})
    report = {"ok": True, "files": files, "train_job": job.spec.get("train_job"), "run": job.spec.get("run")}
    (out / "report.json").write_text(json.dumps(report))


KINDS = {"train": train_work, "export": export_work}


def finished(workspace: Path, kind: str, spec: dict) -> Path:
    job_dir = jobs.create_job(workspace, kind, spec)
    assert jobs.run_job_inline(job_dir, KINDS).state == "finished"
    return job_dir


@pytest.fixture
def world(tmp_path: Path):
    sf = SessionFile.load(write_demo_session(tmp_path))
    run = sf.session.runs[0]
    spec = {"run": {"id": run.id, "base_model": run.base_model}}
    first = finished(sf.workspace, "train", spec)
    second = finished(sf.workspace, "train", spec)
    export = finished(sf.workspace, "export", {"train_job": second.name})
    return sf, run, first, second, export


def test_a_run_is_its_newest_adapter_for_eval_demo_and_chat_alike(world):
    sf, run, first, second, export = world
    resolve = run_resolver(sf.session, sf.workspace)
    by_ref = resolve(f"run:{run.id}")
    assert (by_ref.kind, by_ref.model, by_ref.adapter) == ("transformers", run.base_model, str(second / "adapter"))
    bare = resolve(run.id)  # the demo session's evaluations name the run bare
    chat = engine_from_ref(f"run:{run.id}", sf.session, sf.workspace)
    for other in (bare, chat):
        assert (other.kind, other.model, other.adapter) == (by_ref.kind, by_ref.model, by_ref.adapter)
    # The exported GGUF is there, but a run means what training left: the GGUF only when named.
    assert (export / "export" / "model-q8_0.gguf").is_file()


def test_pinned_job_base_and_export(world):
    sf, run, first, second, export = world
    pinned = run_resolver(sf.session, sf.workspace, pinned={run.id: first.name})
    assert pinned(f"run:{run.id}").adapter == str(first / "adapter")
    resolve = run_resolver(sf.session, sf.workspace)
    assert resolve(f"job:{first.name}").adapter == str(first / "adapter")
    base = resolve("base")
    assert (base.kind, base.model, base.adapter or "") == ("transformers", run.base_model, "")
    gguf = resolve(f"export:{export.name}")
    assert (gguf.kind, gguf.model) == ("llamacpp", str(export / "export" / "model-q8_0.gguf"))  # q8_0 before f16
    assert resolve(f"export:{export.name}:f16").model == str(export / "export" / "model-f16.gguf")
    assert engine_from_ref(f"export:{export.name}", sf.session, sf.workspace).model == gguf.model
    assert resolve("bundled:smollm2-135m-instruct") is None  # models named directly are eval_spec's


def test_what_names_nothing_says_what_to_do(world):
    sf, run, first, second, export = world
    resolve = run_resolver(sf.session, sf.workspace)
    with pytest.raises(ValueError, match="no-such-run.*train it first"):
        resolve("run:no-such-run")
    with pytest.raises(ValueError, match="has no q4_k_m GGUF; it has: f16, q8_0"):
        resolve(f"export:{export.name}:q4_k_m")
    with pytest.raises(EngineRefError, match="export-nope"):
        engine_from_ref("export:export-nope", sf.session, sf.workspace)


def test_a_run_named_by_its_export_is_the_newest_export_of_the_training_job_it_means(world):
    """`export:RUN:lora` (what the demo's evaluations name): the bundled-style base GGUF with the
    LoRA GGUF of the export made from the training job `run:RUN` resolves to, through llama.cpp;
    an export of an older training job is not taken for it."""
    sf, run, first, second, export = world
    resolve = run_resolver(sf.session, sf.workspace)
    lora = resolve(f"export:{run.id}:lora")
    assert (lora.kind, lora.model, lora.adapter) == (
        "llamacpp",
        "/models/base.gguf",
        str(export / "export" / "adapter-f16.gguf"),
    )
    assert resolve(f"export:{run.id}").model == str(export / "export" / "model-q8_0.gguf")
    # `:base` is what the LoRA is applied to, alone: the control scored by the same engine.
    base = resolve(f"export:{run.id}:base")
    assert (base.kind, base.model, base.adapter) == ("llamacpp", "/models/base.gguf", "")
    chat = engine_from_ref(f"export:{run.id}:lora", sf.session, sf.workspace)  # chat resolves it alike
    assert (chat.model, chat.adapter) == (lora.model, lora.adapter)
    # Pinned to the first training job, which has no export: the run's export is not used for it.
    pinned = run_resolver(sf.session, sf.workspace, pinned={run.id: first.name})
    with pytest.raises(ValueError, match=f"no finished export of its training job {first.name}.*persona-tui export"):
        pinned(f"export:{run.id}:lora")
    # A newer training job makes the old export stale, and the message says what to run.
    third = finished(sf.workspace, "train", {"run": {"id": run.id, "base_model": run.base_model}})
    with pytest.raises(ValueError, match=f"{third.name}.*--run {run.id}"):
        resolve(f"export:{run.id}:lora")


def test_an_evaluation_spec_freezes_the_resolved_run(world):
    sf, run, first, second, export = world
    ev = next(e for e in sf.session.evals if e.kind == "traits")
    frozen = build_job_spec(sf, ev.id, run_resolver(sf.session, sf.workspace))
    base, entry = frozen["models"]
    assert (base["label"], entry["label"]) == ("bundled", f"export:{run.id}:lora")
    assert entry["engine"]["adapter"] == str(export / "export" / "adapter-f16.gguf")
    # The same evaluation naming the run bare scores its adapter (what training left).
    ev.models = ["bundled", run.id]
    frozen = build_job_spec(sf, ev.id, run_resolver(sf.session, sf.workspace))
    assert frozen["models"][1]["engine"]["adapter"] == str(second / "adapter")


def test_a_local_runs_recorded_engine_is_its_adapter_not_a_remote_model(tmp_path: Path):
    """A finished hf run's result.json names its engine (kind transformers, the adapter), as the
    worker writes it: the run resolves to that adapter, not to an endpoint with no URL (the demo
    left its run out of every evaluation when it did)."""
    sf = SessionFile.load(write_demo_session(tmp_path))
    run = sf.session.runs[0]

    def local_train(job) -> None:
        train_work(job)
        adapter = str(Path(job.dir) / "adapter")
        (Path(job.dir) / "result.json").write_text(
            json.dumps(
                {
                    "run": run.id,
                    "state": "finished",
                    "step": 6,
                    "adapter": adapter,
                    "engine": {
                        "id": f"run-{run.id}",
                        "kind": "transformers",
                        "model": run.base_model,
                        "adapter": adapter,
                    },
                }
            )
        )

    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": run.id, "base_model": run.base_model}})
    assert jobs.run_job_inline(job_dir, {"train": local_train}).state == "finished"
    spec = run_resolver(sf.session, sf.workspace)(run.id)
    assert (spec.kind, spec.model, spec.adapter) == ("transformers", run.base_model, str(job_dir / "adapter"))


def test_a_local_runs_result_is_not_taken_for_a_remote_engine(tmp_path: Path) -> None:
    """The hf backend's result names its adapter's engine (kind transformers); only an openai
    result is a remote model, or eval would open the local run as an endpoint without a URL."""
    from trainers.train.job import remote_engine

    job_dir = jobs.create_job(tmp_path, "train", {"run": {"id": "r"}})
    status = json.loads((job_dir / "status.json").read_text())
    (job_dir / "status.json").write_text(json.dumps({**status, "state": "finished"}))
    local = {"id": "run-r", "kind": "transformers", "model": "bundled:smollm2-135m-instruct", "adapter": str(job_dir)}
    (job_dir / "result.json").write_text(json.dumps({"run": "r", "state": "finished", "engine": local}))
    assert remote_engine(tmp_path, "r") is None
    remote = {"kind": "openai", "model": "ft:gpt-x:r", "base_url": "http://127.0.0.1:9/v1"}
    (job_dir / "result.json").write_text(json.dumps({"run": "r", "state": "finished", "engine": remote}))
    assert remote_engine(tmp_path, "r") == remote
