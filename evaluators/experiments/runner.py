"""The machinery every study shares: session specs added once, steps run as jobs at most once.

`Experiment` holds one study's session file, its state file (evaluators.experiments.state) and
how jobs run: detached workers followed by reading their files (the default: a killed terminal
loses nothing, the jobs go on, a rerun picks them up) or in this process (`foreground`, which
spares a worker's start-up for tiny runs and tests). `job_step` is the only way a study runs a
job: a step already done is skipped, a step whose job is still running is followed, a stopped
training job is resumed from its checkpoint, and only a step with no usable job starts one.

Session writes go through `save` (by default `SessionFile.save`; the Evaluate pane passes one
that saves through the app, so the app's view of the file stays true).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from evaluators.experiments.state import ExperimentError, ExperimentState
from sessions.model import DatasetSpec, EvalSpec, RunSpec
from supervisor import jobs

if TYPE_CHECKING:
    from sessions.store import SessionFile

Follow = Callable[[Path, str, Console], jobs.JobStatus]

TRAINER_KINDS = {"dataset": "trainers.data.job", "train": "trainers.train.job", "export": "trainers.export.job"}
EVAL_KINDS = {"eval": "evaluators.evaluate.job"}


def watch_quietly(job_dir: Path, label: str, console: Console) -> jobs.JobStatus:
    """Follow a job by its files until it ends, printing one line at the end."""
    status = jobs.read_status(job_dir)
    for status, _ in jobs.watch(job_dir, interval=0.5):  # noqa: B007  (the last status is the answer)
        pass
    console.print(f"  {label}: {status.state}", markup=False, highlight=False)
    return status


@dataclass
class Experiment:
    """One study on one session: where its state is, how it runs jobs and saves the session."""

    session_file: SessionFile
    state: ExperimentState
    console: Console = field(default_factory=Console)
    follow: Follow | None = None
    foreground: bool = False
    save: Callable[[], Any] | None = None
    ran: list[str] = field(default_factory=list)  # steps that did work in this call
    skipped: list[str] = field(default_factory=list)  # steps found done

    @property
    def session(self):
        return self.session_file.session

    @property
    def workspace(self) -> Path:
        return Path(self.session_file.workspace)

    @property
    def session_path(self) -> Path:
        return Path(self.session_file.path).resolve()

    def save_session(self) -> None:
        (self.save or self.session_file.save)()

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    # -- session specs ---------------------------------------------------------------------
    def ensure_dataset(self, spec: DatasetSpec) -> DatasetSpec:
        """The session's dataset `spec.id`, added as given when missing."""
        found = self.session.dataset(spec.id)
        if found is not None:
            return found
        self.session.datasets.append(spec)
        self.say(f"  added dataset spec {spec.id} ({spec.format})")
        return spec

    def ensure_run(self, run: RunSpec) -> RunSpec:
        found = self.session.run(run.id)
        if found is not None:
            return found
        self.session.runs.append(run)
        self.say(f"  added run spec {run.id}")
        return run

    def ensure_eval(self, spec: EvalSpec) -> EvalSpec:
        """Add the evaluation, or bring an existing one's settings in line (its results stay)."""
        found = next((e for e in self.session.evals if e.id == spec.id), None)
        if found is None:
            self.session.evals.append(spec)
            return spec
        kept = {k: v for k, v in found.extra.items() if k in ("results", "note")}
        found.kind, found.models = spec.kind, list(spec.models)
        found.extra = {**spec.extra, **kept}
        return found

    # -- jobs ------------------------------------------------------------------------------
    def _job_dir(self, job_id: str) -> Path:
        return jobs.jobs_root(self.workspace) / job_id

    def _execute(self, job_dir: Path, label: str, resume: bool = False) -> jobs.JobStatus:
        """Run a queued job (or resume a stopped training job) and return its final status."""
        status = jobs.read_status(job_dir)
        kinds = EVAL_KINDS if status.kind == "eval" else TRAINER_KINDS
        follow = self.follow or watch_quietly
        if not self.foreground:
            if resume:
                from trainers.train.job import resume_train_job

                resume_train_job(job_dir, detach=True)
            elif status.state == "queued" and not status.pid:
                from evaluators.evaluate.queue import child_nice

                jobs.start_job(job_dir, nice=child_nice())  # +10 in all, also inside a study's job
            return follow(job_dir, label, self.console)
        if resume:
            from trainers.train.job import CANCEL_FILE

            jobs.requeue_job(job_dir)
            (job_dir / CANCEL_FILE).unlink(missing_ok=True)
        if status.state == "running" or (status.state == "queued" and status.pid):
            return follow(job_dir, label, self.console)  # another process runs it
        watcher = threading.Thread(target=follow, args=(job_dir, label, self.console), daemon=True)
        watcher.start()
        final = jobs.run_job_inline(job_dir, kinds)
        watcher.join(timeout=10)
        return final

    def job_step(
        self, name: str, label: str, create: Callable[[], Path], resumable: bool = False
    ) -> tuple[dict[str, Any], Path]:
        """Run step `name` as a job at most once; return its state record and job directory.

        `create` makes the (queued) job. `resumable`: a failed, cancelled or died job of this
        step continues from its last checkpoint instead of starting over (training).
        """
        record = self.state.get(name)
        job_dir: Path | None = None
        if record.get("job"):
            candidate = self._job_dir(record["job"])
            if (candidate / jobs.STATUS_FILE).is_file():
                job_dir = candidate
        if record.get("state") == "done":
            if job_dir is not None and jobs.read_status(job_dir).state == "finished":
                self.skipped.append(name)
                self.say(f"  [dim]✓ {label}: done earlier (job {job_dir.name})[/]")
                return record, job_dir
            self.state.forget(name)  # its job is gone: do it again
            job_dir = None
        resume = False
        if job_dir is not None:
            status = jobs.read_status(job_dir)
            if status.state == "finished":
                self.skipped.append(name)
                return self.state.done(name), job_dir
            if status.terminal:
                if resumable and status.state in ("failed", "cancelled", "died"):
                    self.say(f"  resuming {label} (job {job_dir.name} {status.state})")
                    resume = True
                else:
                    self.say(f"  {label}: job {job_dir.name} {status.state}; starting a new one")
                    job_dir = None
            else:
                self.say(f"  {label}: following job {job_dir.name} ({status.state})")
        if job_dir is None:
            job_dir = create()
            self.state.started(name, job_dir.name)
        self.ran.append(name)
        final = self._execute(job_dir, label, resume=resume)
        if final.state != "finished":
            reason = (final.error or final.message or "no reason given").splitlines()[0]
            raise ExperimentError(
                f"step {name}: job {final.id} {final.state}: {reason} (log: {job_dir / jobs.LOG_FILE}); "
                "fix that and rerun the same command: finished steps are not redone."
            )
        return self.state.done(name, job=job_dir.name), job_dir

    def computed_step(self, name: str, label: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A step that runs in this process (no job): its result is kept in the state file."""
        record = self.state.get(name)
        if record.get("state") == "done":
            self.skipped.append(name)
            self.say(f"  [dim]✓ {label}: done earlier[/]")
            return record
        self.ran.append(name)
        t0 = time.perf_counter()
        result = compute()
        return self.state.done(name, result=result, seconds=round(time.perf_counter() - t0, 2))

    # -- evaluations -----------------------------------------------------------------------
    def eval_step(
        self, name: str, eval_id: str, resolve: Callable[[str], Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run the session's evaluation `eval_id` as a job once; record its summary under the
        evaluation in the session; return (state record, scores)."""
        from evaluators.evaluate.job import create_eval_job
        from evaluators.evaluate.reader import load_scores

        was_done = self.state.is_done(name)
        record, job_dir = self.job_step(
            name, f"eval {eval_id}", lambda: create_eval_job(self.session_file, eval_id, resolve)
        )
        scores = load_scores(job_dir)
        if not was_done or not record.get("recorded"):
            self.record_results(eval_id, job_dir, scores)
            record = self.state.done(name, recorded=True)
        return record, scores

    def record_results(self, eval_id: str, job_dir: Path, scores: Mapping[str, Any]) -> None:
        """Append the job's summary to the evaluation's `results` in the session (the entry the
        Evaluate pane records too, evaluators.evaluate.queue.result_entry), saved through `save`."""
        from evaluators.evaluate.queue import result_entry

        spec = next((e for e in self.session.evals if e.id == eval_id), None)
        if spec is None:
            return
        entry = result_entry(job_dir, dict(scores))
        spec.extra["results"] = [*(spec.extra.get("results") or []), entry]
        self.save_session()
