"""Training as a job: `run(job)` for kind "train", and the helpers that create and resume one.

The job's spec.toml freezes what the run needs (the run's settings and its datasets' files), so
editing the session later never changes a running or resumable job. The worker validates the
spec first, pins the run's GPUs (`training.devices` -> CUDA_VISIBLE_DEVICES) and waits while they
are busy (trainers.train.gpus), then picks the backend; a run on more than one GPU, or with
`training.processes` >= 2 (CPU processes over gloo where there is no GPU), is relaunched through
`accelerate launch` (the command is saved as launch.txt), each rank running
`python -m trainers.train.job --rank-worker JOB_DIR`. A resumed job (requeued, same directory)
continues from its newest complete checkpoint, appending to the same events.jsonl.

Any failure ends the job *failed* with one sentence (`explain`): missing or empty data, unknown
base model, a sequence length the model cannot take, a full disk, out of memory. Checkpoints
written before stay where they are.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessions.model import DatasetSpec, EngineSpec, Session
from sessions.run_spec import run_from_dict, run_to_dict
from sessions.store import atomic_write
from sessions.workspace import dataset_path, heldout_path
from supervisor import jobs
from trainers.train.backends import CANCEL_FILE, RunError, TrainContext, TrainOutcome, open_backend, validate
from trainers.train.reader import RESULT_FILE, read_result
from trainers.train.run_data import DatasetFile, RunDataError

if TYPE_CHECKING:
    from sessions.store import SessionFile

LAUNCH_FILE = "launch.txt"


class RunSpecError(ValueError):
    """A run's spec has problems; `problems` lists them all, str() is the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" ({len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


# ----------------------------------------------------------------------------- creating jobs


def job_spec(session: Session, workspace: Path, run_id: str, session_path: str = "") -> dict[str, Any]:
    """The frozen inputs of a training job for run `run_id` (validated first: RunSpecError)."""
    run = session.run(run_id)
    if run is None:
        known = ", ".join(r.id for r in session.runs) or "none yet"
        raise RunSpecError([f"run {run_id!r} is not in this session (runs: {known})."])
    problems = validate(run, session)
    if problems:
        raise RunSpecError(problems)
    datasets = []
    for ds_id in run.datasets:
        ds = session.dataset(ds_id)
        assert ds is not None  # validate() checked the ids
        datasets.append(
            {
                "id": ds.id,
                "format": ds.format,
                "path": str(dataset_path(workspace, ds.id).resolve()),
                "heldout": str(heldout_path(workspace, ds.id).resolve()),
            }
        )
    return {"run": run_to_dict(run), "datasets": datasets, "session": session_path}


def create_train_job(session_file: SessionFile, run_id: str, job_id: str | None = None) -> Path:
    """Validate run `run_id` of a `sessions.store.SessionFile` and create its (queued) job."""
    spec = job_spec(session_file.session, session_file.workspace, run_id, str(session_file.path))
    return jobs.create_job(
        session_file.workspace, "train", spec, job_id=job_id or jobs.new_job_id(f"train-{run_id}"[:40])
    )


def resume_train_job(job_dir: str | os.PathLike[str], detach: bool = True) -> int | jobs.JobStatus:
    """Run a cancelled, died or failed training job again from its last checkpoint."""
    jobs.requeue_job(job_dir)
    (Path(job_dir) / CANCEL_FILE).unlink(missing_ok=True)
    if detach:
        return jobs.start_job(job_dir)
    return jobs.run_job_inline(job_dir, {"train": "trainers.train.job"})


def remote_engine(
    workspace: str | os.PathLike[str], run_id: str, statuses: list[jobs.JobStatus] | None = None
) -> dict[str, Any] | None:
    """The engine a finished remote run made (the openai backend's fine-tuned model), newest
    first; None when the run has none. Local runs leave an adapter instead (export_job).
    `statuses`: the workspace's jobs when the caller has listed them already."""
    for status in reversed(jobs.list_jobs(workspace) if statuses is None else statuses):
        if status.kind != "train" or status.state != "finished":
            continue
        result = read_result(status.dir) or {}
        engine = result.get("engine")
        # A local run records its adapter as a transformers engine: only an endpoint's model is remote.
        if (
            result.get("run") == run_id
            and isinstance(engine, dict)
            and engine.get("model")
            and engine.get("kind", "openai") == "openai"
        ):
            return engine
    return None


def remote_engine_spec(engine: dict[str, Any], engine_id: str) -> EngineSpec:
    """The session engine for a remote run's result: its endpoint and the *name* of the key's
    variable, never a key."""
    return EngineSpec(
        id=engine_id,
        kind="openai",
        model=str(engine["model"]),
        base_url=str(engine.get("base_url") or ""),
        api_key_env=str(engine.get("api_key_env") or ""),
    )


def record_remote_engine(session_file: SessionFile, job_dir: str | os.PathLike[str]) -> str | None:
    """Add (or update) the session engine a finished remote run made; return its id.

    Called by whoever followed the job, never by the worker. The engine keeps the endpoint and
    the *name* of the key's variable, as the run had them; never a key.
    """
    result = read_result(job_dir) or {}
    engine = result.get("engine")
    if not isinstance(engine, dict) or not engine.get("model") or engine.get("kind") != "openai":
        return None
    spec = remote_engine_spec(engine, str(engine.get("id") or f"run-{result.get('run')}"))
    engines = session_file.session.engines
    engines[:] = [e for e in engines if e.id != spec.id] + [spec]
    session_file.save()
    return spec.id


# ----------------------------------------------------------------------------- failures


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        out.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def explain(
    exc: BaseException, run_id: str, batch_size: int | str, max_seq_length: int, checkpoints_dir: Path
) -> str | None:
    """One sentence for a failure a person can act on, or None for an unexpected one."""
    from engines.base import EngineError
    from trainers.train.reader import last_checkpoint

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, (RunError, RunDataError, EngineError)):
            return str(e)
    last = last_checkpoint(checkpoints_dir)
    kept = (
        f"; {last.name} in {checkpoints_dir} is intact, so resuming continues from there"
        if last
        else "; no checkpoint had been saved yet"
    )
    for e in chain:
        text = str(e).lower()
        name = type(e).__name__
        if (
            isinstance(e, MemoryError)
            or name == "OutOfMemoryError"
            or "out of memory" in text
            or "can't allocate memory" in text
        ):
            return (
                f"run {run_id!r} ran out of memory with training.batch_size "
                f"{'auto (the micro-batch in the job log)' if batch_size == 'auto' else batch_size} and max_seq_length "
                f"{max_seq_length}; lower one of them (or raise grad_accum) and resume the job{kept}."
            )
        if (
            (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
            or "no space left on device" in text
            or "file write failed" in text
        ):
            where = getattr(e, "filename", None) or "a checkpoint"
            return f"the disk is full: writing {where} failed; free some space and resume the job{kept}."
    return None


# ----------------------------------------------------------------------------- the work


def _elapsed_before(job_dir: Path, step: int) -> float:
    """Training seconds of earlier attempts up to `step` (from their step events)."""
    events, _ = jobs.read_events(job_dir)
    best = 0.0
    for e in events:
        if e.get("event") == "step" and isinstance(e.get("step"), int) and e["step"] <= step:
            best = float(e.get("elapsed") or best)
    return best


def _context(job: jobs.JobReporter | RankReporter, rank: int = 0) -> TrainContext:
    spec = job.spec
    if not isinstance(spec.get("run"), dict):
        raise RunError(f"{job.dir / jobs.SPEC_FILE} has no [run] table; create training jobs with create_train_job.")
    run = run_from_dict(spec["run"])
    datasets = [DatasetFile.from_dict(d) for d in spec.get("datasets", [])]
    session = Session(datasets=[DatasetSpec(id=d.id, format=d.format) for d in datasets], runs=[run])
    problems = validate(run, session)
    if problems:
        raise RunSpecError(problems)
    ctx = TrainContext(job=job, job_dir=Path(job.dir), run=run, datasets=datasets, rank=rank)
    if run.backend in ("hf", "unsloth"):
        from trainers.train.backends.hf import drop_incomplete_checkpoints
        from trainers.train.reader import checkpoint_step, last_checkpoint

        if rank == 0:
            for p in drop_incomplete_checkpoints(ctx.checkpoints_dir):
                job.log(f"removed the incomplete checkpoint {p.name} (cut short by a crash or a full disk)")
        ctx.resume_from = last_checkpoint(ctx.checkpoints_dir)
        if ctx.resume_from is not None:
            step = checkpoint_step(ctx.resume_from) or 0
            ctx.elapsed_before = _elapsed_before(ctx.job_dir, step)
            job.log(f"resuming from {ctx.resume_from.name} (step {step})")
    return ctx


def _write_result(job_dir: Path, outcome: TrainOutcome, run_id: str) -> None:
    result = {
        "run": run_id,
        "state": outcome.state,
        "step": outcome.step,
        "adapter": outcome.adapter,
        "engine": outcome.engine,
        "summary": outcome.summary,
    }
    atomic_write(job_dir / RESULT_FILE, json.dumps(result, indent=1) + "\n", backup=False, fsync=False)


def train(ctx: TrainContext) -> TrainOutcome:
    """Run the backend's lifecycle on a prepared context; failures become one-sentence RunErrors."""
    t = ctx.run.training
    backend = open_backend(ctx.run.backend)
    try:
        backend.setup(ctx)
        if ctx.should_stop():
            return TrainOutcome("cancelled")
        return backend.train()
    except Exception as e:
        sentence = explain(e, ctx.run.id, t.batch_size, t.max_seq_length, ctx.checkpoints_dir)
        if sentence is None:
            raise
        raise RunError(sentence) from e
    finally:
        backend.cleanup()


def run(job: jobs.JobReporter) -> None:
    """The work of a "train" job (called by the job worker with a JobReporter)."""
    (Path(job.dir) / CANCEL_FILE).unlink(missing_ok=True)
    omp = ""
    if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        # OpenMP threads that spin at barriers only while other processes leave the cores idle: on
        # a shared machine a spinning worker starves the app and itself (trainers.train.hardware).
        from trainers.train.hardware import auto_omp_wait_policy

        omp = os.environ["OMP_WAIT_POLICY"] = auto_omp_wait_policy()
    devices = str(job.spec.get("run", {}).get("training", {}).get("devices") or "").strip()
    if devices and "torch" not in sys.modules:
        # Before torch sees the GPUs (the ranks inherit it), numbered as nvidia-smi numbers them.
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    ctx = _context(job)
    from engines.models import resolve_model
    from sessions.manifest import write_manifest
    from trainers.train.hardware import cuda_count

    settings = dict(getattr(job, "spec", None) or {})
    if ctx.run.backend in ("hf", "unsloth"):
        # What "auto" became on this machine (micro-batch, accumulation, precision): it changes results.
        from trainers.train.hardware import resolve_for

        device = resolve_for(ctx.run, others=0.0, resume_from=ctx.resume_from)  # threads: not a result, not measured
        settings["resolved"] = {
            "device": device.kind,
            "batch_size": device.batch_size,
            "grad_accum": device.grad_accum,
            "precision": device.precision,
            "optimizer": device.optimizer,
        }
        if omp:
            settings["resolved"]["omp_wait_policy"] = omp
    if omp:
        job.log(
            f"OMP_WAIT_POLICY auto: {omp} ({'the cores were idle of other work' if omp == 'ACTIVE' else 'other work shares the cores'})"
        )
    write_manifest(
        job,
        models={"base": ctx.run.base_model},
        resolve=resolve_model,
        seed=ctx.run.training.seed,
        settings=settings,
        datasets={f"{d.id}{tag}": p for d in ctx.datasets for tag, p in (("", d.path), (" heldout", d.heldout)) if p},
    )

    if ctx.run.backend in ("hf", "unsloth"):
        from trainers.train.gpus import wait_for_gpus

        if not wait_for_gpus(job, ctx.run):  # a shared box: wait while the run's GPUs are busy
            job.log("cancelled while waiting for a GPU")
            return
    gpus = cuda_count() if ctx.run.backend == "hf" else 0
    processes = launch_processes(ctx.run.training.processes, gpus) if ctx.run.backend == "hf" else 0
    if processes > 1 and "LOCAL_RANK" not in os.environ:
        outcome = _launch_distributed(job, ctx, processes, on_cpu=gpus == 0)
    else:
        outcome = train(ctx)
    job.log(
        f"training {outcome.state} at step {outcome.step}"
        + (f"; adapter in {outcome.adapter}" if outcome.adapter else "")
        + (f"; model {outcome.engine.get('model')}" if outcome.engine else "")
    )
    if outcome.state == "finished" or outcome.adapter or outcome.engine:
        _write_result(ctx.job_dir, outcome, ctx.run.id)
        job.event(event="result", state=outcome.state, adapter=outcome.adapter, engine=outcome.engine)
    if outcome.state == "cancelled" and not job.cancelled:
        job.cancelled = True  # stopped by the cancel file (e.g. another rank's signal)


# ----------------------------------------------------------------------------- more than one GPU


def launch_processes(setting: int, gpus: int) -> int:
    """How many processes `accelerate launch` starts: the run's `training.processes` when set,
    else one per GPU where there are two or more; 0 or 1 means no launch (one plain process)."""
    return setting if setting else (gpus if gpus > 1 else 0)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: two runs on one box must not both take accelerate's 29500."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_command(
    job_dir: str | os.PathLike[str],
    num_processes: int,
    precision: str,
    config_file: str = "",
    python: str = sys.executable,
    on_cpu: bool = False,
    port: int = 0,
) -> list[str]:
    """The `accelerate launch` command that runs one rank worker per process.

    With a config file (multi-node, DeepSpeed, FSDP) accelerate takes the topology from it; without
    one, this machine gets `num_processes` processes: one per GPU, or, with `on_cpu`, CPU
    processes that the Trainer joins over gloo (`use_cpu`). accelerate's own `--cpu` flag would
    start one process only (its multi-CPU path needs mpirun), so the CPU run goes through the same
    torchrun launcher as GPUs do.
    """
    cmd = [python, "-m", "accelerate.commands.launch"]
    if config_file:
        cmd += ["--config_file", str(Path(config_file).expanduser())]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--num_processes", str(num_processes)]
        if port:
            cmd += ["--main_process_port", str(port)]
    if on_cpu:
        precision = "no"  # CPU ranks: the Trainer's own bf16 autocast (use_cpu) decides, not accelerate's AMP
    cmd += ["--mixed_precision", {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")]
    cmd += ["-m", "trainers.train.job", "--rank-worker", str(Path(job_dir).resolve())]
    return cmd


def _launch_distributed(job: jobs.JobReporter, ctx: TrainContext, processes: int, on_cpu: bool = False) -> TrainOutcome:
    from trainers.train.hardware import RESOLVED_BATCH_ENV, resolve_for

    device = resolve_for(ctx.run)
    # Every rank must run the same split (different accumulation counts would hang the all-reduce),
    # and free GPU memory is best read before any rank has loaded a model.
    os.environ[RESOLVED_BATCH_ENV] = f"{device.batch_size}x{device.grad_accum}"
    config = "" if on_cpu else ctx.run.training.accelerate_config
    cmd = accelerate_command(
        ctx.job_dir, processes, device.precision, config, on_cpu=on_cpu, port=0 if config else free_port()
    )
    line = shlex.join(cmd)
    (ctx.job_dir / LAUNCH_FILE).write_text(line + "\n", encoding="utf-8")
    where = f"{processes} CPU processes (gloo)" if on_cpu else f"{processes} GPUs"
    job.log(f"launching on {where}: {line}")
    job.event(event="launch", command=line, gpus=0 if on_cpu else processes, processes=processes, cpu=on_cpu)
    rank0 = ctx.job_dir / "rank0.json"
    rank0.unlink(missing_ok=True)
    # A session of its own: a cancel's SIGTERM to this worker's group must not kill the ranks
    # before they checkpoint; the cancel file below stops them in order instead.
    with open(ctx.job_dir / jobs.LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    jobs.register_child_group(ctx.job_dir, proc.pid)
    offset = 0
    try:
        while proc.poll() is None:
            if job.cancelled and not (ctx.job_dir / CANCEL_FILE).exists():
                (ctx.job_dir / CANCEL_FILE).write_text("cancel\n")  # every rank stops after a checkpoint
            events, offset = jobs.read_events(ctx.job_dir, offset)
            for e in events:
                if e.get("event") == "step":
                    job.progress(
                        e.get("step", 0), e.get("max_steps") or None, f"step {e.get('step')} loss {e.get('loss')}"
                    )
            time.sleep(1.0)
    finally:
        if proc.poll() is None:  # this worker is leaving (an error, a second Ctrl-C): take the ranks along
            (ctx.job_dir / CANCEL_FILE).write_text("cancel\n")
            try:
                proc.wait(timeout=120)  # time to save a checkpoint
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        jobs.unregister_child_group(ctx.job_dir, proc.pid)
    try:
        data = json.loads(rank0.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = jobs.log_tail(ctx.job_dir, 1).strip()
        raise RunError(
            f"the distributed run exited with code {proc.returncode} without a result; last log line: {tail}"
        ) from None
    if data.get("error"):
        raise RunError(data["error"])
    return TrainOutcome(**{k: data[k] for k in ("state", "step", "adapter", "engine", "summary") if k in data})


class RankReporter:
    """The reporter of one rank under accelerate: rank 0 writes events; the parent owns status.json."""

    def __init__(self, job_dir: Path, spec: dict[str, Any], rank: int) -> None:
        self.dir = job_dir
        self.spec = spec
        self.rank = rank

    @property
    def cancelled(self) -> bool:
        return (self.dir / CANCEL_FILE).exists()

    def event(self, **fields: Any) -> None:
        if self.rank == 0:
            with open(self.dir / jobs.EVENTS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"t": time.time(), **fields}, default=str) + "\n")

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        pass  # the parent worker turns step events into progress

    def log(self, msg: str) -> None:
        print(f"[rank {self.rank}] {msg}", flush=True)


def rank_worker(job_dir: Path) -> int:
    """One rank of a multi-GPU run (started by accelerate); rank 0 reports the outcome in rank0.json."""
    rank = int(os.environ.get("RANK", "0"))
    reporter = RankReporter(job_dir, jobs.read_spec(job_dir), rank)
    result: dict[str, Any]
    try:
        ctx = _context(reporter, rank=rank)
        outcome = train(ctx)
        result = {
            "state": outcome.state,
            "step": outcome.step,
            "adapter": outcome.adapter,
            "engine": outcome.engine,
            "summary": outcome.summary,
        }
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the job
        result = {"error": jobs._one_sentence(e)}
    if rank == 0:
        (job_dir / "rank0.json").write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rank-worker":
        raise SystemExit(rank_worker(Path(sys.argv[2])))
    print("usage: python -m trainers.train.job --rank-worker JOB_DIR (started by accelerate launch)", file=sys.stderr)
    raise SystemExit(2)
