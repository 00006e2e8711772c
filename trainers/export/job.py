"""Export as a job: `run(job)` for kind "export", and `create_export_job` to queue one.

    merge adapter -> export/merged/            (safetensors + tokenizer + chat template)
    convert       -> export/model-f16.gguf     (llama.cpp's convert_hf_to_gguf.py)
    quantize      -> export/model-<type>.gguf  (llama.cpp's quantizer, one per requested type)
    LoRA GGUF     -> export/adapter-f16.gguf   (convert_lora_to_gguf.py; applies on the base GGUF)
    Modelfiles    -> export/<gguf stem>.Modelfile
    verify        -> every GGUF against the merged model (trainers.export.verify)
    report        -> export/report.json        (files, sizes, times, verification figures)

Everything is written into `export.partial/` and renamed to `export/` only when every step and
every check passed, so a folder named `export/` is always a whole, verified export. On failure
the partial folder is removed and `export-failed.json` says what happened (with the figures of
any check that ran); the job ends failed with one sentence.

Spec fields (all optional but one way to find the adapter):
    session     the session TOML (to find a run's training job and a persona)
    run         a run id: the newest finished training job of that run is exported
    train_job   a training job id in the same workspace
    adapter     a PEFT adapter folder (with base_model)
    base_model  the base model name (else the training job's / adapter's RUN.json)
    quants      ["q8_0", "q4_k_m"] by default; any type trainers.export.quantize offers
    persona     a persona id of the session: its text becomes the Modelfiles' SYSTEM
    system      a system prompt for the Modelfiles (instead of a persona)
    options     {verify = true, adapter_gguf = true, modelfile = true, keep_merged = true, threads = 0,
                 bounds = {<type> = [top1_min, kl_max, greedy_min]}  (override a type's bounds),
                 prompts = [...]  (verification prompts instead of verify.DEFAULT_PROMPTS)}
"""

from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import jobs
from trainers.export import ExportError, cpu_threads
from trainers.export.reader import EXPORT_DIR, FAILED_FILE, REPORT_FILE, read_json_object, read_report
from trainers.train.reader import adapter_dir

if TYPE_CHECKING:
    from sessions.store import SessionFile

DEFAULT_QUANTS = ("q8_0", "q4_k_m")
PARTIAL_DIR = "export.partial"
DEFAULT_OPTIONS = {"verify": True, "adapter_gguf": True, "modelfile": True, "keep_merged": True, "threads": 0}


# ----------------------------------------------------------------------------- creating jobs


def create_export_job(
    workspace: str | Path,
    *,
    session: str | Path | None = None,
    run: str | None = None,
    train_job: str | None = None,
    adapter: str | Path | None = None,
    base_model: str | None = None,
    quants: list[str] | tuple[str, ...] | str | None = DEFAULT_QUANTS,
    persona: str | None = None,
    system: str | None = None,
    options: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> Path:
    """Check what can be checked cheaply (quant names, the adapter exists), then queue the job."""
    from trainers.export.quantize import parse_quant_list

    spec: dict[str, Any] = {
        "session": str(Path(session).resolve()) if session else None,
        "run": run,
        "train_job": train_job,
        "adapter": str(Path(adapter).resolve()) if adapter else None,
        "base_model": base_model,
        "quants": parse_quant_list(quants),
        "persona": persona,
        "system": system,
        "options": {**DEFAULT_OPTIONS, **(options or {})},
    }
    resolve_source(spec, Path(workspace))  # fails now rather than in the worker
    return jobs.create_job(workspace, "export", spec, job_id=job_id)


# ----------------------------------------------------------------------------- finding the adapter


def _train_job_run(job_dir: Path) -> tuple[str, str]:
    """(run id, base model) of a training job, from its spec."""
    try:
        spec = jobs.read_spec(job_dir)
    except jobs.JobError:
        return "", ""
    run = spec.get("run")
    if isinstance(run, dict):
        return str(run.get("id", "")), str(run.get("base_model", ""))
    return str(run or spec.get("run_id", "")), str(spec.get("base_model", ""))


def find_train_job(workspace: Path, run_id: str, statuses: list[jobs.JobStatus] | None = None) -> Path:
    """The newest finished training job of `run_id` that left an adapter. `statuses`: the
    workspace's jobs when the caller has listed them already."""
    candidates = []
    for status in jobs.list_jobs(workspace) if statuses is None else statuses:
        if status.kind != "train":
            continue
        rid, _ = _train_job_run(status.dir)
        if rid == run_id:
            candidates.append(status)
    if not candidates:
        raise ExportError(f"run {run_id!r} has no training job in {workspace}; train it first (persona-tui train).")
    done = [s for s in candidates if s.state == "finished" and adapter_dir(s.dir) is not None]
    if not done:
        latest = candidates[-1]
        raise ExportError(
            f"run {run_id!r} has no finished training job with an adapter (the latest, {latest.id}, is "
            f"{latest.state}); let a training job finish, or name an adapter folder."
        )
    return done[-1].dir


def resolve_source(spec: dict[str, Any], workspace: Path) -> dict[str, Any]:
    """Which adapter and base model the spec means: {adapter, base_model, run, train_job}."""
    from trainers.export.merge import check_adapter

    run_id = spec.get("run") or ""
    train_job = spec.get("train_job") or ""
    base = spec.get("base_model") or ""
    if spec.get("adapter"):
        adapter = Path(spec["adapter"])
    elif train_job:
        job_dir = jobs.jobs_root(workspace) / jobs.check_job_id(train_job)
        if not (job_dir / jobs.STATUS_FILE).is_file():
            raise ExportError(
                f"training job {train_job!r} is not in {jobs.jobs_root(workspace)}; check the job id (persona-tui jobs)."
            )
        adapter = job_dir / "adapter"
    elif run_id:
        job_dir = find_train_job(workspace, run_id)
        train_job = job_dir.name
        adapter = job_dir / "adapter"
    else:
        raise ExportError("an export needs a run (--run), a training job (--job) or an adapter folder (--adapter).")
    check_adapter(adapter)
    run_info = read_json_object(adapter / "RUN.json")
    if train_job:
        rid, job_base = _train_job_run(jobs.jobs_root(workspace) / train_job)
        run_id = run_id or rid
        base = base or job_base
    run_id = run_id or str(run_info.get("run", ""))
    base = base or str(run_info.get("base_model", ""))
    if not base:
        raise ExportError(f"the base model of the adapter {adapter} is unknown; name it (--base MODEL).")
    from trainers.export.merge import full_precision_base

    merge_base = full_precision_base(base)  # a run on a pre-quantised 4-bit base merges into its original
    source = {"adapter": str(adapter), "base_model": merge_base, "run": run_id, "train_job": train_job}
    if merge_base != base:
        source["trained_on"] = base
    return source


def _persona_text(spec: dict[str, Any]) -> str:
    if spec.get("system"):
        return str(spec["system"])
    if not spec.get("persona"):
        return ""
    if not spec.get("session"):
        raise ExportError(f"persona {spec['persona']!r} was named but no session to find it in; pass the session.")
    from sessions.model import persona_system_prompt
    from sessions.store import SessionFile

    session = SessionFile.load(Path(spec["session"])).session
    persona = session.persona(spec["persona"])
    if persona is None:
        known = ", ".join(p.id for p in session.personas) or "none"
        raise ExportError(f"persona {spec['persona']!r} is not in {spec['session']} (personas: {known}).")
    return persona_system_prompt(persona)


# ----------------------------------------------------------------------------- the work


class _Steps:
    """Progress over a known list of steps, one line per step in the job log."""

    def __init__(self, job: jobs.JobReporter, names: list[str]) -> None:
        self.job, self.names, self.done = job, names, 0

    def start(self, label: str) -> None:
        self.job.raise_if_cancelled()
        self.job.progress(self.done, len(self.names), label)
        self.job.log(label)

    def finish(self, **fields: Any) -> None:
        self.done += 1
        self.job.progress(self.done, len(self.names))
        if fields:
            self.job.event(event="export_step", **fields)


def _disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno == errno.ENOSPC


def run(job: jobs.JobReporter) -> None:
    """The work of an "export" job (called by the job worker with a JobReporter)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see trainers.train.job
    job_dir = Path(job.dir)
    workspace = job_dir.parent.parent
    partial, final = job_dir / PARTIAL_DIR, job_dir / EXPORT_DIR
    (job_dir / FAILED_FILE).unlink(missing_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    report: dict[str, Any] = {"ok": False, "job": job_dir.name, "started": time.time()}
    try:
        _export(job, workspace, partial, report)
        report["ok"] = True
        report["seconds"] = round(time.time() - report["started"], 2)
        _write_json(partial / REPORT_FILE, report)
        if final.exists():
            old = job_dir / f".{EXPORT_DIR}.old-{os.getpid()}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(partial, final)
        job.event(event="export_done", report=f"{EXPORT_DIR}/{REPORT_FILE}", files=len(report.get("files", [])))
        job.log(f"export finished in {report['seconds']:.1f} s: {final}")
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        # A cancel also kills the converter or quantizer child (same process group): its failure
        # is the cancel, not an error.
        cancelled = isinstance(e, (jobs.JobCancelled, KeyboardInterrupt)) or bool(getattr(job, "cancelled", False))
        if _disk_full(e):
            e = ExportError(f"the disk filled up while writing {partial}; free some space and export again.")
        report["error"] = "cancelled" if cancelled else _one_sentence(e)
        report["seconds"] = round(time.time() - report["started"], 2)
        report["files"] = []
        try:
            _write_json(job_dir / FAILED_FILE, report)
        except OSError:
            pass
        if cancelled and not isinstance(e, KeyboardInterrupt):
            raise jobs.JobCancelled() from None
        if isinstance(e, ValueError):  # ExportError, EngineError, SessionError: a sentence, no traceback
            raise jobs.JobFailed(_one_sentence(e)) from None
        raise


def _one_sentence(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from sessions.store import atomic_write

    atomic_write(path, json.dumps(data, indent=1, default=str) + "\n", backup=False, fsync=False)


def _export(job: jobs.JobReporter, workspace: Path, out: Path, report: dict[str, Any]) -> None:
    from engines.base import EngineError
    from engines.models import hf_model_dir, resolve_model
    from trainers.export import gguf_convert, merge, modelfile, quantize, verify

    spec = job.spec
    options = {**DEFAULT_OPTIONS, **(spec.get("options") or {})}
    # Chosen once, as the export starts (each reading takes half a second): every core that other
    # processes leave idle (trainers.export.cpu_threads), unless the options set a number.
    threads = int(options.get("threads") or 0) or cpu_threads()
    job.log(f"{threads} thread(s) for quantisation and verification" + ("" if options.get("threads") else " (auto)"))
    quants = quantize.parse_quant_list(spec.get("quants", list(DEFAULT_QUANTS)))
    source = resolve_source(spec, workspace)
    system = _persona_text(spec)
    report.update(source)
    report.update(quants=quants, options=options, system=bool(system))
    try:
        base = resolve_model(source["base_model"])
    except EngineError as e:
        raise ExportError(str(e)) from None
    from sessions.manifest import write_manifest

    write_manifest(job, models={"base": base, "adapter": source["adapter"]})
    names = ["merge", "f16", *quants]
    if options["adapter_gguf"]:
        names += ["lora"] + (["base-f16"] if base.kind != "gguf" else [])
    if options["modelfile"]:
        names.append("modelfiles")
    if options["verify"]:
        names += ["reference", "check-f16", *[f"check-{q}" for q in quants]] + (
            ["check-lora"] if options["adapter_gguf"] else []
        )
    steps = _Steps(job, names)
    files: list[dict[str, Any]] = []
    report["files"] = files
    report["steps"] = {}
    out.mkdir(parents=True)
    name = f"{source['run'] or 'export'}"

    def record(rel: str, kind: str, info: dict[str, Any], **extra: Any) -> None:
        path = out / rel
        size = _size(path)
        entry = {
            "path": f"{EXPORT_DIR}/{rel}",
            "kind": kind,
            "bytes": size,
            "seconds": info.get("seconds", 0.0),
            **extra,
        }
        files.append(entry)
        job.log(f"  wrote {entry['path']} ({size / 1e6:.1f} MB in {entry['seconds']:.1f} s)")

    # The LoRA GGUF needs only the adapter and the base: its conversion (a subprocess, mostly
    # imports) runs while the adapter is merged and the merged model converted; step 4 collects
    # it. Should an earlier step fail, the conversion ends on its own before the worker exits.
    lora_future: concurrent.futures.Future | None = None
    if options["adapter_gguf"]:
        base_hf = hf_model_dir(source["base_model"])
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lora-gguf")
        lora_future = pool.submit(
            gguf_convert.convert_lora, source["adapter"], base_hf, out / "adapter-f16.gguf", "f16"
        )
        pool.shutdown(wait=False)

    # 1. merge
    steps.start(
        f"merging the adapter into {source['base_model']}"
        + (
            f" (the full-precision original of {source['trained_on']}, the 4-bit base the run trained on)"
            if source.get("trained_on")
            else ""
        )
    )
    info = merge.merge_adapter(source["adapter"], source["base_model"], out / "merged")
    record("merged", "hf", info)
    report["steps"]["merge"] = info
    steps.finish(step="merge", **info)

    # 2. F16
    steps.start("converting the merged model to GGUF F16 (llama.cpp's convert_hf_to_gguf.py)")
    f16 = out / "model-f16.gguf"
    info = gguf_convert.convert_model(out / "merged", f16, "f16", model_name=name)
    record(f16.name, "gguf", info, type="f16")
    report["steps"]["f16"] = info
    steps.finish(step="f16", **info)

    # 3. quantisations
    for q in quants:
        steps.start(f"quantizing to {q}")
        path = out / f"model-{q}.gguf"
        info = quantize.quantize(f16, path, q, threads=threads)
        job.log(_tail(info.pop("output", ""), 3))
        record(path.name, "gguf", info, type=q)
        report["steps"][q] = info
        steps.finish(step=q, **info)

    # 4. the adapter as a LoRA GGUF, and the base GGUF it applies to
    base_gguf: Path | None = None
    if options["adapter_gguf"]:
        steps.start(
            "converting the adapter to a LoRA GGUF (llama.cpp's convert_lora_to_gguf.py, started with the merge)"
        )
        lora_gguf = out / "adapter-f16.gguf"
        assert lora_future is not None
        info = lora_future.result()
        record(lora_gguf.name, "lora", info, type="f16", base_gguf="")
        report["steps"]["lora"] = info
        steps.finish(step="lora", **info)
        if base.kind == "gguf":
            base_gguf = base.path
        else:
            steps.start("converting the base model to GGUF F16 for the LoRA")
            base_gguf = out / "base-f16.gguf"
            info = gguf_convert.convert_model(base_hf, base_gguf, "f16", model_name="base")
            record(base_gguf.name, "gguf", info, type="f16", role="base")
            steps.finish(step="base-f16", **info)
        files[[f["kind"] for f in files].index("lora")]["base_gguf"] = (
            f"{EXPORT_DIR}/{base_gguf.name}" if base_gguf.parent == out else str(base_gguf)
        )
        report["base_gguf"] = str(base_gguf) if base_gguf.parent != out else f"{EXPORT_DIR}/{base_gguf.name}"

    # 5. Modelfiles
    tokenizer = _merged_tokenizer(out / "merged")
    if options["modelfile"]:
        steps.start("writing Ollama Modelfiles")
        t0 = time.monotonic()
        frame = modelfile.measure_frame(tokenizer)
        comment = f"Ollama Modelfile written by persona-tui export (job {job.dir.name}, run {source['run'] or '-'})."
        for entry in [f for f in files if f["kind"] in ("gguf", "lora") and f.get("role") != "base"]:
            gguf_name = Path(entry["path"]).name
            if entry["kind"] == "lora":
                from_name = (
                    Path(entry["base_gguf"]).name
                    if entry["base_gguf"].startswith(EXPORT_DIR + "/")
                    else entry["base_gguf"]
                )
                text = modelfile.render_modelfile(
                    from_name, tokenizer, system or None, adapter_name=gguf_name, frame=frame, comment=comment
                )
            else:
                text = modelfile.render_modelfile(gguf_name, tokenizer, system or None, frame=frame, comment=comment)
            mf = out / (Path(gguf_name).stem + ".Modelfile")
            mf.write_text(text, encoding="utf-8")
            entry["modelfile"] = f"{EXPORT_DIR}/{mf.name}"
        report["modelfile"] = {"stops": modelfile.stop_tokens(tokenizer, frame), "system": bool(system)}
        steps.finish(step="modelfiles", seconds=round(time.monotonic() - t0, 2))

    # 6. verification
    if options["verify"]:
        prompts = [str(p) for p in options.get("prompts") or verify.DEFAULT_PROMPTS]
        steps.start(f"verifying: transformers reference on {len(prompts)} prompts x {verify.N_POSITIONS} positions")
        ref = verify.build_reference(out / "merged", tokenizer, prompts, threads=threads)
        report["verification"] = {
            "prompts": len(ref.prompts),
            "positions": verify.N_POSITIONS,
            "greedy_tokens": verify.N_GREEDY,
            "reference_seconds": ref.seconds,
            "checks": [],
        }
        steps.finish(step="reference", seconds=ref.seconds)
        failures = []
        targets: list[tuple[Path, str, Path | None, verify.Bounds | None]] = [
            (out / Path(f["path"]).name, f["type"], None, None)
            for f in files
            if f["kind"] == "gguf" and f.get("role") != "base"
        ]
        if options["adapter_gguf"] and base_gguf is not None:
            # A GGUF base is the very file the HF base was dequantised from: only compute precision differs.
            b = verify.ADAPTER_ON_GGUF_BASE if base.kind == "gguf" else verify.bounds_for("f16")
            targets.append((base_gguf, "lora", out / "adapter-f16.gguf", b))
        overrides = options.get("bounds") or {}
        for path, gtype, lora, bounds in targets:
            if gtype in overrides:
                bounds = verify.Bounds(*overrides[gtype])
            label = f"{path.name} + {lora.name}" if lora else path.name
            steps.start(f"verifying {label} against the merged model")
            check = verify.check_gguf(
                path, ref, tokenizer, gtype if gtype != "lora" else "f16", lora=lora, bounds=bounds, threads=threads
            )
            d = check.to_dict()
            d["gguf"] = f"{EXPORT_DIR}/{path.name}" if path.parent == out else str(path)
            d["lora"] = f"{EXPORT_DIR}/{lora.name}" if lora else ""
            d["type"] = gtype
            report["verification"]["checks"].append(d)
            for f in files:
                if f["path"] == (d["lora"] or d["gguf"]):
                    f["verified"] = check.passed
            job.log("  " + check.summary())
            steps.finish(
                step=f"check-{gtype}",
                passed=check.passed,
                top1=d["top1"],
                mean_kl=d["mean_kl"],
                greedy_equal=d["greedy_equal"],
                seconds=check.seconds,
            )
            if not check.passed:
                failures.append(f"{label}: {check.reason}")
        if failures:
            raise ExportError(
                f"verification failed for {failures[0]}"
                + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
                + "; the GGUF does not compute what the trained model computes."
            )

    if not options["keep_merged"]:
        shutil.rmtree(out / "merged", ignore_errors=True)
        files[:] = [f for f in files if f["kind"] != "hf"]


def _merged_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    from trainers.export import quiet_transformers

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(folder))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _tail(text: str, n: int) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def record_export(session_file: SessionFile, job_dir: str | Path) -> dict[str, Any] | None:
    """List a finished export under its run in the session (`[[runs.exports]]`) and save it.

    Called by whoever followed the job (CLI, demo, app), never by the worker, so only one process
    writes the session. Returns the entry, or None when the job exported no run of this session.
    """
    report = read_report(job_dir)
    if not report or not report.get("run"):
        return None
    run = next((r for r in session_file.session.runs if r.id == report["run"]), None)
    if run is None:
        return None
    checks = {c["lora"] or c["gguf"]: c for c in (report.get("verification") or {}).get("checks", [])}
    files = []
    for f in report.get("files") or []:
        entry = {
            "path": str(Path(job_dir) / f["path"]),
            "kind": f.get("kind", ""),
            "type": f.get("type", f.get("kind", "")),
            "bytes": int(f.get("bytes", 0)),
            "seconds": float(f.get("seconds", 0.0)),
        }
        if "verified" in f:
            entry["verified"] = bool(f["verified"])
        if f["path"] in checks:
            entry.update(top1=round(checks[f["path"]]["top1"], 4), mean_kl=round(checks[f["path"]]["mean_kl"], 5))
        if f.get("modelfile"):
            entry["modelfile"] = str(Path(job_dir) / f["modelfile"])
        files.append(entry)
    entry = {
        "job": Path(job_dir).name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "ok": bool(report.get("ok")),
        "seconds": float(report.get("seconds") or 0.0),
        "files": files,
    }
    if report.get("error"):
        entry["error"] = str(report["error"])
    exports = [e for e in (run.extra.get("exports") or []) if e.get("job") != entry["job"]]
    run.extra["exports"] = [*exports, entry]
    session_file.save()
    return entry


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text (the CLI prints it; the TUI may show it)."""
    lines = []
    ok = report.get("ok")
    lines.append(
        f"export {report.get('job', '')}: {'OK' if ok else 'FAILED'}"
        + (f" in {report['seconds']:.1f} s" if report.get("seconds") is not None else "")
        + (f" - {report['error']}" if report.get("error") else "")
    )
    if report.get("adapter"):
        lines.append(
            f"  adapter {report['adapter']} on {report.get('base_model', '?')}"
            + (f" (run {report['run']})" if report.get("run") else "")
        )
    files = report.get("files") or []
    if files:
        lines.append(f"  {'file':<32} {'type':<8} {'MB':>8} {'s':>6}  verified")
        for f in files:
            verified = {True: "yes", False: "NO"}.get(f.get("verified"), "-")
            lines.append(
                f"  {f['path']:<32} {f.get('type', f['kind']):<8} {f['bytes'] / 1e6:>8.1f} {f['seconds']:>6.1f}  {verified}"
            )
            if f.get("modelfile"):
                lines.append(f"  {f['modelfile']:<32} {'Modelfile':<8}")
    ver = report.get("verification")
    if ver:
        lines.append(
            f"  verification: {ver['prompts']} prompts x {ver['positions']} positions, "
            f"greedy first {ver['greedy_tokens']} tokens; reference in {ver['reference_seconds']:.1f} s"
        )
        lines.append(f"  {'gguf':<40} {'top-1':>6} {'(min)':>6} {'KL':>8} {'(max)':>6} {'greedy':>7}  result")
        for c in ver["checks"]:
            label = Path(c["gguf"]).name + (f" + {Path(c['lora']).name}" if c.get("lora") else "")
            b = c["bounds"]
            lines.append(
                f"  {label:<40} {c['top1']:>6.3f} {b['top1_min']:>6.2f} {c['mean_kl']:>8.4f} {b['kl_max']:>6.2f} "
                f"{c['greedy_equal']:>7.0%}  {'pass' if c['passed'] else 'FAIL: ' + c['reason']}"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- expected sizes

# Bits per weight of llama.cpp's file types (ggml's block sizes; a k-quant "_m"/"_s" mix as
# llama.cpp's quantize tool lists it). An estimate: a model whose widths are not multiples of 256
# keeps some tensors in a wider type (the bundled 135M model's q4_k_m is 105 MB, not 82 MB).
BITS_PER_WEIGHT = {
    "f16": 16.0,
    "bf16": 16.0,
    "q8_0": 8.5,
    "q6_k": 6.5625,
    "q5_1": 6.0,
    "q5_k_m": 5.69,
    "q5_k_s": 5.54,
    "q5_0": 5.5,
    "q4_1": 5.0,
    "q4_k_m": 4.85,
    "q4_k_s": 4.58,
    "q4_0": 4.5,
    "q3_k_l": 4.27,
    "q3_k_m": 3.91,
    "q3_k_s": 3.5,
    "q2_k": 2.96,
}
# The types the app's export dialog offers (any type llama.cpp makes can be named on the CLI).
DIALOG_QUANTS = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k")


def parameter_count(base_model: str) -> int | None:
    """The base model's parameter count, from its config.json or else its GGUF's tensors (no
    weights are loaded); None when neither can be read."""
    from trainers.train.memory_estimate import count_params, model_config, shape_of

    config = model_config(base_model)
    if config:
        try:
            return count_params(shape_of(config))[0]
        except (KeyError, TypeError, ValueError):
            pass
    from engines.base import EngineError
    from engines.models import resolve_model

    try:
        model = resolve_model(base_model)
        if model.kind != "gguf":
            return None
        import gguf

        return int(sum(int(t.n_elements) for t in gguf.GGUFReader(str(model.path)).tensors))
    except (EngineError, OSError, ValueError, ImportError):
        return None


def expected_size(params: int | None, qtype: str) -> int | None:
    """Bytes a GGUF of `params` parameters takes in `qtype` (an estimate; see BITS_PER_WEIGHT)."""
    bits = BITS_PER_WEIGHT.get(qtype)
    return int(params * bits / 8) if params and bits else None
