"""The export job end to end on the bundled model: files, report, verification, and its failures."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from export_fixtures import BASE, build_shared_export, make_session, make_train_job
from supervisor import jobs
from trainers.export import ExportError
from trainers.export.job import create_export_job, format_report
from trainers.export.reader import FAILED_FILE, exports_of_run, read_report
from trainers.worker import KINDS


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return build_shared_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tokenizer(shared):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared.out / "merged"))


@pytest.fixture(scope="session")
def reference(shared, tokenizer):
    from trainers.export.verify import build_reference

    return build_reference(shared.out / "merged", tokenizer)


@pytest.mark.slow
def test_export_writes_every_file_and_a_report(shared):
    report = shared.report
    assert report["ok"] is True and report["run"] == "r1" and report["base_model"] == BASE
    assert report["train_job"] == shared.train_job.name
    by_type = {f["type"]: f for f in report["files"] if f["kind"] == "gguf"}
    assert set(by_type) == {"f16", "q8_0", "q4_k_m"}
    assert [f["path"] for f in report["files"] if f["kind"] == "hf"] == ["export/merged"]
    for f in report["files"]:
        path = shared.export_job / f["path"]
        assert path.exists(), f["path"]
        assert f["bytes"] > 0 and f["seconds"] >= 0
    # Quantisation shrinks the file; the LoRA GGUF is small.
    assert by_type["q4_k_m"]["bytes"] < by_type["q8_0"]["bytes"] < by_type["f16"]["bytes"]
    lora = next(f for f in report["files"] if f["kind"] == "lora")
    assert lora["bytes"] < by_type["q4_k_m"]["bytes"] / 10
    # A Modelfile beside each GGUF; the persona is its SYSTEM.
    for f in report["files"]:
        if f["kind"] in ("gguf", "lora"):
            text = (shared.export_job / f["modelfile"]).read_text()
            assert "TEMPLATE" in text and 'PARAMETER stop "<|im_end|>"' in text
            assert 'SYSTEM """You are Ada.' in text
    assert "ADAPTER ./adapter-f16.gguf" in (shared.out / "adapter-f16.Modelfile").read_text()
    # Nothing temporary is left.
    assert not (shared.export_job / "export.partial").exists()
    assert not (shared.export_job / FAILED_FILE).exists()
    assert not list(shared.out.glob("*.tmp"))
    status = jobs.read_status(shared.export_job)
    assert status.state == "finished" and status.done == status.total > 0
    steps = [e for e in jobs.read_events(shared.export_job)[0] if e.get("event") == "export_step"]
    assert {"merge", "f16", "q8_0", "q4_k_m", "lora", "check-f16"} <= {e["step"] for e in steps}


@pytest.mark.slow
def test_verification_figures_pass_their_bounds(shared):
    checks = {c["type"]: c for c in shared.report["verification"]["checks"]}
    assert set(checks) == {"f16", "q8_0", "q4_k_m", "lora"}
    for c in checks.values():
        assert c["passed"] and c["tokens_match"] and c["positions"] == 8 * 32, c
    f16 = checks["f16"]
    assert f16["top1"] >= 0.97 and f16["mean_kl"] <= 0.01 and f16["greedy_equal"] >= 0.75
    # Quantisation drifts, and more for fewer bits, but stays inside its own bound.
    assert checks["q8_0"]["mean_kl"] <= 0.05 and checks["q8_0"]["top1"] >= 0.9
    assert checks["q4_k_m"]["mean_kl"] > checks["q8_0"]["mean_kl"] > f16["mean_kl"]
    text = format_report(shared.report)
    assert "model-f16.gguf" in text and "pass" in text
    listed = exports_of_run(shared.workspace, "r1")
    assert [r["job"] for r in listed if r["ok"]] == [shared.export_job.name]
    # The CLI printed the same report.
    assert "model-q4_k_m.gguf" in shared.cli_output and "verification" in shared.cli_output
    # ... and listed the export under its run in the session: files, sizes, times, verdicts.
    from sessions.store import SessionFile

    assert "listed under run r1" in shared.cli_output
    (entry,) = SessionFile.load(shared.session).session.runs[0].extra["exports"]
    assert entry["job"] == shared.export_job.name and entry["ok"] is True and entry["seconds"] > 0
    by_type = {f["type"]: f for f in entry["files"] if f["kind"] == "gguf"}  # the LoRA GGUF is f16 too
    assert set(by_type) == {"f16", "q8_0", "q4_k_m"} and [f["kind"] for f in entry["files"]].count("lora") == 1
    for f in entry["files"]:
        assert Path(f["path"]).exists() and f["bytes"] == _size(Path(f["path"]))
    assert by_type["f16"]["verified"] is True and by_type["f16"]["top1"] >= 0.97
    assert by_type["f16"]["mean_kl"] == pytest.approx(checks["f16"]["mean_kl"], abs=1e-5)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@pytest.mark.slow
def test_quantised_ggufs_load_and_chat(shared):
    from engines import open_engine
    from sessions.model import EngineSpec

    for name in ("model-q8_0.gguf", "model-q4_k_m.gguf"):
        engine = open_engine(EngineSpec(id=name, kind="llamacpp", model=str(shared.out / name), n_ctx=512))
        try:
            reply = engine.chat([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
        finally:
            engine.close()
        assert reply.strip()


@pytest.mark.slow
def test_the_lora_gguf_is_what_makes_the_base_match(shared, reference, tokenizer):
    from engines.models import resolve_model
    from trainers.export.verify import ADAPTER_ON_GGUF_BASE, check_gguf

    base = resolve_model(BASE).path
    with_lora = check_gguf(
        base, reference, tokenizer, "lora", lora=shared.out / "adapter-f16.gguf", bounds=ADAPTER_ON_GGUF_BASE
    )
    without = check_gguf(base, reference, tokenizer, "lora", bounds=ADAPTER_ON_GGUF_BASE)
    assert with_lora.passed, with_lora.summary()
    assert not without.passed and without.mean_kl > 3 * with_lora.mean_kl, without.summary()


@pytest.mark.slow
def test_a_corrupted_tensor_fails_verification(shared, reference, tokenizer, tmp_path):
    import numpy as np
    from gguf import GGUFReader

    from trainers.export.verify import check_gguf

    bad = tmp_path / "model-f16.gguf"
    shutil.copy(shared.out / "model-f16.gguf", bad)
    reader = GGUFReader(bad)
    tensor = next(t for t in reader.tensors if t.name == "blk.12.ffn_down.weight")
    offset, nbytes = int(tensor.data_offset), int(tensor.n_bytes)
    del reader
    noise = np.random.default_rng(0).normal(0, 0.05, nbytes // 2).astype(np.float16)
    with open(bad, "r+b") as f:
        f.seek(offset)
        f.write(noise.tobytes())
    check = check_gguf(bad, reference, tokenizer, "f16")
    assert not check.passed
    assert check.tokens_match  # the tokenizer is intact: the numbers caught it
    assert "top-1" in check.reason or "KL" in check.reason
    good = check_gguf(shared.out / "model-f16.gguf", reference, tokenizer, "f16")
    assert good.passed, good.summary()


@pytest.mark.slow
def test_a_failed_check_fails_the_job_and_leaves_no_export(shared, tmp_path):
    """Impossible bounds make verification fail after the GGUF is written: nothing may remain."""
    job_dir = create_export_job(
        shared.workspace,
        adapter=shared.train_job / "adapter",
        base_model=BASE,
        quants=[],
        options={
            "adapter_gguf": False,
            "modelfile": False,
            "bounds": {"f16": [1.01, 0.0]},
            "prompts": ["Hello!", "What is your name?"],
        },
    )
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert status.error.startswith("verification failed for model-f16.gguf") and "\n" not in status.error
    assert not (job_dir / "export").exists() and not (job_dir / "export.partial").exists()
    failed = json.loads((job_dir / FAILED_FILE).read_text())
    assert failed["ok"] is False and failed["verification"]["checks"][0]["passed"] is False
    assert failed["verification"]["prompts"] == 2 and failed["verification"]["checks"][0]["positions"] == 2 * 32
    assert read_report(job_dir)["error"] == status.error


@pytest.mark.slow
def test_a_cancelled_detached_export_leaves_nothing(shared):
    job_dir = create_export_job(
        shared.workspace,
        adapter=shared.train_job / "adapter",
        base_model=BASE,
        quants=["q8_0"],
        options={"verify": False},
    )
    jobs.start_job(job_dir)
    deadline = time.monotonic() + 600
    # Cancel once the merged model is on disk, while llama.cpp's converter runs.
    while "converting" not in (status := jobs.read_status(job_dir)).message:
        assert not status.terminal, f"the export ended before its conversion was seen: {status}"
        assert time.monotonic() < deadline, f"never saw the conversion start: {status}"
        time.sleep(0.1)
    assert (job_dir / "export.partial" / "merged" / "config.json").is_file()
    assert jobs.cancel_job(job_dir)
    status = next(s for s, _ in jobs.watch(job_dir, interval=0.3) if s.terminal)
    assert status.state == "cancelled", status.error
    assert not (job_dir / "export").exists() and not (job_dir / "export.partial").exists()
    assert read_report(job_dir)["error"] == "cancelled"


# ----------------------------------------------------------------------------- bad input (fast)


def test_unknown_quant_type_is_refused_with_the_valid_names(tmp_path):
    sf = make_session(tmp_path)
    with pytest.raises(ExportError) as e:
        create_export_job(sf.workspace, adapter=tmp_path, base_model=BASE, quants="q8_0,q3_zz")
    msg = str(e.value)
    assert "q3_zz" in msg and "q4_k_m" in msg and "q5_k_m" in msg and "q4_0" in msg and "\n" not in msg
    assert not (sf.workspace / "jobs").exists() or not list((sf.workspace / "jobs").iterdir())


def test_a_run_without_a_finished_adapter_is_refused(tmp_path):
    sf = make_session(tmp_path)
    with pytest.raises(ExportError, match="run 'r1' has no training job"):
        create_export_job(sf.workspace, run="r1")
    empty = tmp_path / "empty-adapter"
    empty.mkdir()
    with pytest.raises(ExportError, match="no adapter_config.json"):
        create_export_job(sf.workspace, adapter=empty, base_model=BASE)


def test_a_job_whose_adapter_vanished_fails_with_one_sentence(tmp_path):
    sf = make_session(tmp_path)
    job_dir = jobs.create_job(
        sf.workspace, "export", {"adapter": str(tmp_path / "gone"), "base_model": BASE, "quants": []}
    )
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert "does not exist" in status.error and "\n" not in status.error
    assert not (job_dir / "export").exists() and not (job_dir / "export.partial").exists()
    assert json.loads((job_dir / FAILED_FILE).read_text())["error"] == status.error


def test_unsupported_architecture_fails_in_the_converter(tmp_path):
    from trainers.export.gguf_convert import convert_model

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NopeForCausalLM"], "model_type": "nope"}))
    with pytest.raises(ExportError) as e:
        convert_model(tmp_path, tmp_path / "out.gguf")
    assert "NopeForCausalLM" in str(e.value) and "not supported" in str(e.value)
    assert not (tmp_path / "out.gguf").exists()


def test_corrupt_or_missing_gguf_is_one_sentence(tmp_path):
    from trainers.export.quantize import quantize
    from trainers.export.verify import open_gguf

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ExportError, match="could not quantize junk.gguf"):
        quantize(junk, tmp_path / "q.gguf", "q8_0")
    assert not (tmp_path / "q.gguf").exists()
    with pytest.raises(ExportError, match="missing or corrupt"):
        open_gguf(junk, n_ctx=64)
    with pytest.raises(ExportError, match="does not exist"):
        quantize(tmp_path / "nope.gguf", tmp_path / "q.gguf", "q8_0")


@pytest.mark.slow
def test_export_by_training_job_id_finds_the_base(tmp_path):
    sf = make_session(tmp_path)
    train = make_train_job(sf)
    from trainers.export.job import resolve_source

    source = resolve_source({"train_job": train.name}, sf.workspace)
    assert source == {"adapter": str(train / "adapter"), "base_model": BASE, "run": "r1", "train_job": train.name}


@pytest.mark.slow
def test_a_disk_that_fills_during_conversion_fails_in_one_sentence_and_leaves_nothing(shared, tmp_path, monkeypatch):
    """The shared run's adapter exported again, with the converter hitting ENOSPC half-way."""
    import errno

    from trainers.export import gguf_convert

    def full_disk(src, dst, *a, **k):
        Path(dst).write_bytes(b"GGUF" + b"\0" * 4096)  # a half-written file
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(gguf_convert, "convert_model", full_disk)
    job_dir = jobs.create_job(shared.workspace, "export", {"train_job": shared.train_job.name, "quants": []})
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "failed"
    assert status.error.startswith("the disk filled up while writing") and "free some space" in status.error
    assert "\n" not in status.error
    assert not (job_dir / "export").exists() and not (job_dir / "export.partial").exists()
    assert not list(job_dir.rglob("*.gguf"))  # nothing half-written looks like a good export
    # The earlier, good export of the same run is untouched.
    assert (shared.out / "model-f16.gguf").is_file() and read_report(shared.export_job)["ok"] is True
