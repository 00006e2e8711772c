"""Model references: one grammar, one resolver, one preference order.

Evaluations, experiments, the demo, `persona-tui chat` and the Chat pane name models with these
strings; `run_resolver` (for evaluation specs) and `persona_tui.conversation.engine_from_ref`
(for chat) both turn them into engines here, so one reference means one model everywhere:

    <engine id>       an [[engines]] entry of the session (looked up first: a session's own names win)
    base              the runs' base model (the first run's, else the bundled model) through
                      transformers: the same weights and code path a run's adapter is scored with
    run:ID            run ID, by the preference order below
    ID                a bare run id (when it is no engine id) means run:ID
    job:ID            that training job's adapter on its base model (transformers)
    export:ID[:TYPE]  the GGUF an export job wrote, through llama.cpp: TYPE f16, q8_0, q4_k_m, ...
                      (default q8_0, else f16); TYPE lora is the base GGUF with the LoRA GGUF,
                      TYPE base that base GGUF alone (the run's control, same engine and quant).
                      ID is an export job, or a run: then the newest finished export of the
                      training job `run:ID` means (the demo names `export:RUN:lora`, so that the
                      bundled GGUF and the run are scored by one engine at one quantisation)
    bundled:NAME, a .gguf path, an HF model folder: a model named directly
                      (evaluators.evaluate.spec.resolve_model; chat adds gguf:, hf:, openai:)

The preference order for a run (`run:ID` or a bare ID) — what its training left, never a
conversion of it, so `demo`, `eval`, the experiments and chat score and show the same model:

    1. the training job pinned for the run (an experiment scores exactly the jobs it trained);
    2. a run trained by a service (the openai backend): its fine-tuned model;
    3. the newest finished training job of the run that left an adapter: that adapter on the
       run's base model, through transformers.

A run's GGUF export is used only when named (`export:ID`): it is a conversion (merged,
quantized), verified against the adapter but not the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sessions.model import EngineSpec, Session
from supervisor import jobs
from trainers.train.reader import adapter_dir

BASE = "base"
RUN_PREFIX = "run:"
JOB_PREFIX = "job:"
EXPORT_PREFIX = "export:"
DEFAULT_BASE_MODEL = "bundled:smollm2-135m-instruct"
# The GGUF an `export:ID` without a type names, best first.
GGUF_PREFERENCE = ("q8_0", "f16")


def base_model_of(session: Session) -> str:
    """The base model the session's runs share (the first run's), else the bundled model."""
    return session.runs[0].base_model if session.runs else DEFAULT_BASE_MODEL


def base_engine(model: str, label: str = BASE) -> EngineSpec:
    return EngineSpec(id=label, kind="transformers", model=model)


def job_engine(workspace: Path, job_id: str, label: str = "") -> EngineSpec:
    """A finished training job's adapter on its base model (transformers)."""
    from trainers.export.job import resolve_source

    source = resolve_source({"train_job": job_id}, Path(workspace))
    return EngineSpec(
        id=label or f"{JOB_PREFIX}{job_id}", kind="transformers", model=source["base_model"], adapter=source["adapter"]
    )


def run_engine(
    workspace: Path, run_id: str, label: str = "", statuses: list[jobs.JobStatus] | None = None
) -> EngineSpec:
    """Run `run_id` by the preference order (steps 2 and 3); ValueError saying what to do when
    it has nothing to score yet. `statuses`: the workspace's jobs when already listed."""
    from trainers.export.job import find_train_job
    from trainers.train.job import remote_engine, remote_engine_spec

    label = label or f"{RUN_PREFIX}{run_id}"
    statuses = jobs.list_jobs(workspace) if statuses is None else statuses
    remote = remote_engine(Path(workspace), run_id, statuses)
    if remote is not None:  # the openai backend's fine-tuned model, not a local adapter
        return remote_engine_spec(remote, label)
    job_dir = find_train_job(Path(workspace), run_id, statuses)
    return job_engine(workspace, job_dir.name, label)


def export_engine(workspace: Path, body: str, label: str = "", train_job: str | None = None) -> EngineSpec:
    """`export:ID[:TYPE]` (body is `ID[:TYPE]`): the export's GGUF through llama.cpp. ID is an
    export job, or a run with a training job (then its newest export: `run_export`, of
    `train_job` when given)."""
    from trainers.export.job import find_train_job
    from trainers.export.reader import read_report

    job_id, _, gtype = body.partition(":")
    label = label or f"{EXPORT_PREFIX}{body}"
    if not (Path(workspace) / "jobs" / job_id).is_dir():
        try:
            of_run = train_job or find_train_job(Path(workspace), job_id).name
        except ValueError:  # no run of that name either: the export job's message below
            of_run = None
        if of_run:
            job_id = run_export(workspace, job_id, of_run)
    job_dir = Path(workspace) / "jobs" / jobs.check_job_id(job_id)
    report = read_report(job_dir)
    if not report or not report.get("ok"):
        why = f" ({report['error']})" if report and report.get("error") else ""
        raise ValueError(
            f"export job {job_id!r} has no finished export in {Path(workspace) / 'jobs'}{why}; "
            "run persona-tui export first."
        )
    files = report.get("files", [])
    if gtype in ("lora", "base"):
        lora = next((f for f in files if f["kind"] == "lora"), None)
        if lora is None:
            raise ValueError(f"export job {job_id!r} wrote no LoRA GGUF (it ran with --no-lora-gguf).")
        base = lora["base_gguf"]
        base_path = job_dir / base if base.startswith("export/") else Path(base)
        if gtype == "base":  # what the LoRA is applied to, alone: the run's control
            return EngineSpec(id=label, kind="llamacpp", model=str(base_path))
        return EngineSpec(id=label, kind="llamacpp", model=str(base_path), adapter=str(job_dir / lora["path"]))
    ggufs = {f.get("type"): f for f in files if f["kind"] == "gguf" and f.get("role") != "base"}
    if not gtype:
        gtype = next((t for t in GGUF_PREFERENCE if t in ggufs), GGUF_PREFERENCE[-1])
    if gtype not in ggufs:
        raise ValueError(f"export job {job_id!r} has no {gtype} GGUF; it has: {', '.join(ggufs) or 'none'} (or lora).")
    return EngineSpec(id=label, kind="llamacpp", model=str(job_dir / ggufs[gtype]["path"]))


def run_export(workspace: Path, run_id: str, train_job: str | None = None) -> str:
    """The id of the newest finished export of the training job run `run_id` resolves to (the
    pinned one when given); ValueError saying what to run when there is none."""
    from trainers.export.job import find_train_job
    from trainers.export.reader import read_report

    job = train_job or find_train_job(Path(workspace), run_id).name
    for status, spec in finished_jobs(workspace, "export"):
        report = read_report(status.dir) or {}
        if report.get("ok") and (report.get("train_job") or spec.get("train_job")) == job:
            return status.id
    raise ValueError(
        f"run {run_id!r} has no finished export of its training job {job}; run "
        f"`persona-tui export SESSION --run {run_id}` first."
    )


def run_resolver(
    session: Session, workspace: Path, pinned: Mapping[str, str] | None = None, base_model: str | None = None
) -> Callable[[str], EngineSpec | None]:
    """The `resolve` callable for evaluators.evaluate.spec: an EngineSpec for `base`, `run:ID`, a
    bare run id, `job:ID` and `export:ID[:TYPE]`; None for refs it does not know (engine ids and
    models named directly are eval_spec's). `pinned` maps a run id to the training job to score."""
    pinned = dict(pinned or {})
    workspace = Path(workspace)

    def resolve(ref: str) -> EngineSpec | None:
        if ref == BASE:
            return base_engine(base_model or base_model_of(session))
        run_id = ref[len(RUN_PREFIX) :] if ref.startswith(RUN_PREFIX) else ref if session.run(ref) else None
        if run_id is not None:
            if run_id in pinned:
                return job_engine(workspace, pinned[run_id], ref)
            return run_engine(workspace, run_id, ref)
        if ref.startswith(JOB_PREFIX):
            return job_engine(workspace, ref[len(JOB_PREFIX) :], ref)
        if ref.startswith(EXPORT_PREFIX):
            body = ref[len(EXPORT_PREFIX) :]
            return export_engine(workspace, body, ref, pinned.get(body.partition(":")[0]))
        return None

    return resolve


def finished_jobs(workspace: Path, kind: str) -> list[tuple[jobs.JobStatus, dict[str, Any]]]:
    """Finished jobs of a kind, newest first, with their specs."""
    out = []
    for status in jobs.list_jobs(workspace):
        if status.kind != kind or status.state != "finished":
            continue
        try:
            out.append((status, jobs.read_spec(status.dir)))
        except (OSError, ValueError):
            continue
    out.sort(key=lambda pair: pair[0].ended or pair[0].created or 0, reverse=True)
    return out


def export_gguf(workspace: Path, train_dir: Path) -> Path | None:
    """The preferred verified GGUF exported from `train_dir`, if an export job made one (the
    demo's side-by-side chat shows the exported model)."""
    for status, spec in finished_jobs(workspace, "export"):
        if str(spec.get("train_job") or "") != train_dir.name:
            continue
        for quant in GGUF_PREFERENCE:
            path = status.dir / "export" / f"model-{quant}.gguf"
            if path.is_file():
                return path
    return None


def finished_train_jobs(workspace: Path) -> list[tuple[str, str]]:
    """(job id, run id) of every finished training job that left an adapter, oldest first."""
    out: list[tuple[str, str]] = []
    if not Path(workspace).is_dir():
        return out
    for status in jobs.list_jobs(workspace):
        if status.kind == "train" and status.state == "finished" and adapter_dir(status.dir) is not None:
            try:
                run = jobs.read_spec(status.dir).get("run")
            except ValueError:
                continue
            out.append((status.id, str(run.get("id", "")) if isinstance(run, dict) else ""))
    return out
