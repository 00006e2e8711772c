"""An experiment started from the app, as one parent job (kind "experiment").

`persona-tui experiment` runs a study in the foreground of a terminal (its steps are jobs, so a
killed terminal loses nothing). From the app the whole study is a detached job too, so quitting
the app does not stop it between steps:

    cfg = prepare_format_comparison(session_file, persona, size, save)   # specs added, saved
    job_dir = create_experiment_job(session_file, cfg); jobs.start_job(job_dir)

`prepare_*` adds the study's datasets, runs and evaluations to the session in the caller's
process and saves them through `save` (the app's), because the study's steps read them from the
file. The job's worker reads the session from disk and runs the study exactly as the command
does (`evaluators.experiments.format_comparison.run`), but never writes the session file (a TUI
may have it open): its log holds the study's printed lines, its progress the current step, and
its events `child_started` / `child_ended` for each eval job (with `eval`, `job`, `state`), so the
app records their summaries (`evaluators.evaluate.queue.unrecorded_results`) and the study's table
(`record_experiment`) when the job ends or the app next opens.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor import jobs

KIND = "experiment"
WORKER = "evaluators.worker"
STUDIES = ("format-comparison",)


def prepare_format_comparison(
    session_file: Any, persona: str, size: int, save: Callable[[], Any] | None = None, **overrides: Any
) -> Any:
    """The study's settings for `persona` at `size` examples per format (and any `overrides` of
    format_comparison.preset), its specs added to the session and saved through `save`;
    ExperimentError (one sentence) when it cannot run."""
    from rich.console import Console

    from evaluators.experiments import format_comparison as fc
    from evaluators.experiments.runner import Experiment
    from evaluators.experiments.state import ExperimentError, ExperimentState

    if size < 2:
        raise ExperimentError(
            f"size {size} is too small: the study needs at least 2 examples per format (one held out)."
        )
    found = session_file.session.persona(persona)
    if found is None:
        known = ", ".join(p.id for p in session_file.session.personas) or "none"
        raise ExperimentError(f"{session_file.path}: there is no persona {persona!r} (personas: {known}).")
    if not found.traits:
        raise ExperimentError(f"persona {persona!r} has no traits; the study measures traits, so add some first.")
    cfg = fc.preset(persona, size < fc.GPU["size"], session_file.workspace, size=size, **overrides)
    state = ExperimentState.open(session_file.workspace, cfg.id, fc.STUDY, cfg.state_config())
    exp = Experiment(session_file, state, Console(quiet=True), save=save)
    fc.add_specs(exp, cfg, found)
    return cfg


def create_experiment_job(session_file: Any, cfg: Any) -> Path:
    """A queued job that runs the format comparison `cfg` (a FormatComparison)."""
    from evaluators.experiments import format_comparison as fc

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}
    return jobs.create_job(
        session_file.workspace,
        KIND,
        {
            "session": str(Path(session_file.path).resolve()),
            "study": fc.STUDY,
            "experiment": cfg.id,
            "settings": settings,
        },
        worker=WORKER,
    )


class _LogLines(io.TextIOBase):
    """A file for a rich Console: each finished line goes to the job's log."""

    def __init__(self, job: Any) -> None:
        super().__init__()
        self.job = job
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            if line.strip():
                self.job.log(line.rstrip())
        return len(text)


def _follower(job: Any) -> Callable[[Path, str, Any], jobs.JobStatus]:
    """How the study follows each step's job here: mirror its progress into this job's status,
    pass a cancel on to it, and say when an eval job starts and ends."""
    import time

    def follow(job_dir: Path, label: str, console: Any) -> jobs.JobStatus:
        status = jobs.read_status(job_dir)
        eval_id = ""
        if status.kind == "eval":
            try:
                eval_id = str(jobs.read_spec(job_dir).get("eval") or "")
            except jobs.JobError:
                eval_id = ""
            if eval_id:
                job.event(event="child_started", eval=eval_id, job=job_dir.name)
        asked = False
        while not status.terminal:
            job.progress(
                status.done,
                status.total or None,
                f"{label}: {status.state} {int(status.done)}/"
                f"{int(status.total) if status.total else '?'} {status.message}"[:160],
            )
            if job.cancelled and not asked:
                jobs.cancel_job(job_dir)
                asked = True
            time.sleep(0.3)
            status = jobs.read_status(job_dir)
        job.event(event="child_ended", job=job_dir.name, state=status.state, **({"eval": eval_id} if eval_id else {}))
        console.print(f"  {label}: {status.state}", markup=False, highlight=False)
        return status

    return follow


def run(job: Any) -> None:
    """The experiment's work: the study, as `persona-tui experiment` runs it, without saving the session."""
    from rich.console import Console

    from evaluators.experiments import format_comparison as fc
    from sessions.store import SessionFile

    spec = job.spec
    if spec.get("study") not in STUDIES:
        job.fail(f"the experiment job's study {spec.get('study')!r} is not one of: {', '.join(STUDIES)}.")
    sf = SessionFile.load(spec["session"])
    cfg = fc.FormatComparison(**dict(spec.get("settings") or {}))
    console = Console(
        file=_LogLines(job),  # type: ignore[arg-type]  # a TextIOBase is a text file
        width=160,
        color_system=None,
        force_terminal=False,
    )
    job.progress(0, None, f"format comparison {cfg.id}: starting")
    try:
        result = fc.run(sf, cfg, console=console, follow=_follower(job), save=lambda: None)
    except ValueError as e:  # ExperimentError and friends: one sentence each
        job.raise_if_cancelled()  # a step stopped by cancel ends the study "cancelled", not "failed"
        job.fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    job.event(event="experiment_result", experiment=cfg.id, partial=bool(result.get("partial")))
    job.progress(1, 1, f"format comparison {cfg.id}: done")


def record_experiment(session: Any, workspace: str | Path, job_dir: str | Path) -> bool:
    """Put a finished experiment job's table under its traits evaluation in `session` (as the
    command does); True when that changed the session."""
    from evaluators.experiments import format_comparison as fc
    from evaluators.experiments.state import RESULT_FILE, experiment_dir, read_json

    try:
        spec = jobs.read_spec(job_dir)
    except jobs.JobError:
        return False
    exp_id = str(spec.get("experiment") or "")
    if spec.get("study") != fc.STUDY or not exp_id:
        return False
    try:
        result = read_json(experiment_dir(workspace, exp_id) / RESULT_FILE)
    except ValueError:
        return False
    target = next((e for e in session.evals if e.id == f"{exp_id}-traits"), None)
    if not result or target is None:
        return False
    summary = fc.session_summary(result)
    if target.extra.get("experiment") == summary:
        return False
    target.extra["experiment"] = summary
    return True
