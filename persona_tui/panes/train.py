"""Train pane: run specs in a form validated as you type, their jobs, and the loss drawn live.

Left: the session's run specs (`n` adds one) and their training jobs with states (`s` starts the
selected run as a detached job, `c` cancels the selected job — its worker saves a checkpoint
first —, `r` resumes a cancelled, failed or died job from its last checkpoint, `space` overlays
a job on the chart to compare, `m` switches the chart between a smoothed line over the raw
points and the raw points alone). Right: "Live" — train and eval loss against step for the
selected job and the compared ones, step, loss, learning rate, tokens/s, ETA, the loss summarised
as window means (`trainers.train.loss_curve`), a progress bar, the last log lines, and the machine (CPU and RAM through psutil, or the GPUs through NVML when
nvidia-ml-py is installed); "Record" — what made the selected job (its manifest in short: commit,
package versions, model and data hashes, seed, machine; `i` opens all of it) and, for each job
overlaid on the chart, what differs from it; "Settings" — every field of the run with its help text, checked as
it is typed, problems named by field.

Nothing here trains or imports torch: jobs are detached workers (`trainers.train.job`). The
pane's `JobFollower` (persona_tui/widgets/job_follower.py, the one the Data and Evaluate panes
use) lists the train and export jobs every 2 s and follows each job the Live view shows, reading
its files (`status.json`, `events.jsonl`, `log.txt`, `manifest.json`) in threads and posting what
changed; the pane keeps each job's history from those messages. Quit during a run and reopen: the
run goes on, and the chart is rebuilt from events.jsonl, history included.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widget import Widget
from textual.widgets import (
    Checkbox,
    DataTable,
    Input,
    Label,
    ListItem,
    ListView,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.data_table import RowDoesNotExist
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from persona_tui.messages import SessionChanged
from persona_tui.widgets.job_follower import JobFollower
from sessions import run_spec as rs
from sessions.manifest import format_manifest, manifest_differences, manifest_summary
from sessions.model import RunSpec
from sessions.workspace import make_id
from supervisor import jobs

FOLLOW_S = 0.5
LIST_KEY = "jobs"  # the JobFollower key of the jobs listing (job ids key the jobs followed)
PULL_PREFIX = "pull:"  # ... and of a Hub pull started from the form
MACHINE_S = 2.0
CHOICES = {
    "method": rs.METHODS,
    "backend": rs.BACKENDS,
    "training.lr_scheduler": rs.SCHEDULERS,
    "training.optimizer": rs.OPTIMIZERS,
    "training.precision": rs.PRECISIONS,
    "training.report_to": rs.REPORTERS,
}
TRISTATE = ("auto", "true", "false")  # an optional switch: unset means the backend decides
TOP_FIELDS = [
    (
        "base_model",
        "str",
        "Base model: bundled:smollm2-135m-instruct, a .gguf file, an HF folder or a cached HF repo id.",
    ),
    ("datasets", "list[str]", "Dataset ids of this session, comma-separated."),
    ("method", "str", "sft, or dpo for preference pairs (tailoring_dpo)."),
    ("backend", "str", "hf (transformers + peft + TRL, CPU or GPU), unsloth (NVIDIA GPU), openai (fine-tuning API)."),
]


def _fields() -> list[tuple[str, str, str]]:
    """(dotted name, type, help) of every editable field of a run, in form order."""
    out = list(TOP_FIELDS)
    for prefix, cls in (("lora", rs.LoraSettings), ("training", rs.TrainingSettings)):
        for f in dataclasses.fields(cls):
            out.append((f"{prefix}.{f.name}", str(f.type), f.metadata.get("help", "")))
    return out


FIELDS = _fields()


def _get(run: RunSpec, name: str) -> Any:
    obj: Any = run
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _set(run: RunSpec, name: str, value: Any) -> None:
    *parents, last = name.split(".")
    obj: Any = run
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def parse_field(kind: str, text: str) -> Any:
    """The typed value of a form entry; ValueError with the reason when it is not one."""
    text = text.strip()
    if kind == "int":
        return int(text)
    if kind == "int | str":  # a count or a word such as "auto" (training.batch_size)
        return int(text) if text.lstrip("+-").isdigit() else text
    if kind == "float":
        value = float(text)
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    if kind == "list[str]":
        return [x.strip() for x in text.split(",") if x.strip()]
    return text


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


_JOB_ID = re.compile(r"^[a-z_]+-(?:.+-)?\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)\d\d-[0-9a-f]{4}$")
# Symbol and colour per state, so state and step share one narrow column at 80x24.
_STATE_LOOK = {
    "finished": ("✓", "green"),
    "running": ("▶", "cyan"),
    "queued": ("…", "dim"),
    "failed": ("✗ failed", "red"),
    "died": ("† died", "red"),
    "cancelled": ("■", "yellow"),
}


_OWN_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def recent_log(job_dir: Path, state: str, n: int = 4) -> str:
    """The job's own last log lines (the worker stamps them "[HH:MM:SS]"), so library warnings
    do not crowd them out of the four lines shown; a failed or died job shows the raw tail,
    where its traceback is."""
    tail = jobs.log_tail(job_dir, 60)
    if state in ("failed", "died"):
        return "\n".join(tail.splitlines()[-n:])
    own = [line for line in tail.splitlines() if _OWN_LINE.match(line)]
    return "\n".join(own[-n:])


def short_job_id(job_id: str, width: int = 11) -> str:
    """ "train-20261201-122208-d783" (or "train-RUN-20261201-…") -> "12-01 12:22": the jobs
    column is 26 wide at 80x24, and the run's jobs are listed under it already.
    The full id is in the live stats line above the chart."""
    m = _JOB_ID.match(job_id)
    if m and job_id.startswith("export-"):  # an export of a run listed above it: "exp 07:20"
        return f"exp {m[3]}:{m[4]}"[:width]
    if m:
        return f"{m[1]}-{m[2]} {m[3]}:{m[4]}"[:width]
    return job_id.removeprefix("train-")[:width]


def job_state_cell(s: Any) -> Text:
    """The state as a symbol and the steps reached ("▶ 45/200"), or the word where no step counts."""
    symbol, style = _STATE_LOOK.get(s.state, (s.state, ""))
    step = f" {int(s.done)}/{int(s.total)}" if s.total and s.state not in ("failed", "died") else ""
    return Text(symbol + step if len(symbol) == 1 else symbol, style=style)


def _wid(name: str) -> str:
    return "f-" + name.replace(".", "-")


def format_live(
    status: jobs.JobStatus | None,
    last: dict[str, Any],
    evals: list[tuple[int, float]],
    steps: list[tuple[int, float]] | None = None,
) -> str:
    """The status lines above the chart: each under ~53 columns, the chart's width at 80x24.
    The last one is the run's loss as `trainers.train.loss_curve` summarises it (window means, eval
    first and last), the numbers `persona-tui train` and the demo print."""
    if status is None:
        return "No job selected. Pick a run and press s to start it."
    step = last.get("step", 0)
    total = last.get("max_steps") or status.total or "?"
    parts = [f"step {step}/{total}"]
    if last.get("loss") is not None:
        parts.append(f"loss {last['loss']:.4f}")
    if evals:
        parts.append(f"eval {evals[-1][1]:.4f}")
    if last.get("eta") is not None and not status.terminal:
        parts.append(f"ETA {_duration(last['eta'])}")
    elif last.get("elapsed") is not None:
        parts.append(f"took {_duration(last['elapsed'])}")
    line3 = []
    if last.get("lr") is not None:
        line3.append(f"lr {last['lr']:.2e}")
    if last.get("tokens_per_s") is not None:
        line3.append(f"{last['tokens_per_s']:.0f} tok/s")
    if last.get("s_per_step") is not None:
        line3.append(f"{last['s_per_step']:.2f} s/step")
    if last.get("gpu_peak_mb") is not None:
        line3.append(f"GPU peak {last['gpu_peak_mb'] / 1024:.1f} GiB")
    elif last.get("peak_mb") is not None:
        line3.append(f"peak {last['peak_mb'] / 1024:.2f} GiB")
    text = f"{status.id}  {status.state}\n" + "  ".join(parts) + "\n" + "  ".join(line3)
    if steps and len(steps) > 1:
        from trainers.train.loss_curve import loss_summary

        s = loss_summary(steps, evals)
        text += f"\nloss {s.first:.3f}→{s.last:.3f} (first/last {s.window})"
        if s.eval_points > 1:
            text += f"  eval {s.eval_first:.3f}→{s.eval_last:.3f}"
    if status.state in ("failed", "died") and status.error:
        text += "\n" + status.error.splitlines()[0]
    return text


def format_export_live(status: jobs.JobStatus, checks: list[dict[str, Any]]) -> str:
    """An export job's lines above the chart: its step, then each GGUF's verification as it lands."""
    text = f"{status.id}  {status.state}  step {int(status.done)}/{int(status.total) or '?'}"
    if status.message and not status.terminal:
        text += f"\n{status.message}"
    for c in checks:
        name = str(c.get("step", "")).removeprefix("check-")
        verdict = "pass" if c.get("passed") else "FAIL"
        text += f"\n{name}: top-1 {float(c.get('top1', 0)):.3f}  KL {float(c.get('mean_kl', 0)):.4f}  {verdict}"
    if status.state in ("failed", "died") and status.error:
        text += "\n" + status.error.splitlines()[0]
    return text


def record_text(
    job_id: str | None, manifest: dict[str, Any] | None, compared: dict[str, dict[str, Any] | None], loaded: bool = True
) -> str:
    """What made a job (its manifest in short) and, for each job overlaid on the chart, what differs."""
    if job_id is None:
        return "No job selected. A job's record (versions, model and data hashes, machine) shows here."
    lines = [f"{job_id}  (i: the whole manifest)", *(manifest_summary(manifest) if loaded else ["reading…"])]
    for other, m in compared.items():
        if m is None:
            lines.append(f"compared {other}: no manifest to compare")
            continue
        flags = manifest_differences(manifest, m)
        lines.append(f"⚠ {other} differs: " + "; ".join(flags) if flags else f"compared {other}: made alike")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def machine_text() -> str:
    """CPU and RAM (psutil), or each NVIDIA GPU's load and free memory (NVML, else nvidia-smi):
    on a shared box, which GPU a run can have."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            lines = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                temp = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
                lines.append(f"GPU{i} {util:3d}%  free {mem.free / 2**30:.1f}/{mem.total / 2**30:.1f} GiB  {temp}°C")
            if lines:
                return "  ".join(lines)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no driver or no GPU: ask nvidia-smi, then show the CPU
        pass
    from trainers.train.gpus import gpu_states, gpus_line

    line = gpus_line(gpu_states())
    if line:
        return line
    import psutil

    mem = psutil.virtual_memory()
    load = ""
    try:
        import os

        load = f"  load {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    return (
        f"CPU {psutil.cpu_percent(interval=None):3.0f}% of {psutil.cpu_count()}{load}  "
        f"RAM {mem.used / 2**30:.1f}/{mem.total / 2**30:.1f} GiB"
    )


class TrainPane(Vertical):
    """Run specs, their jobs, and the live loss chart."""

    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("s", "start", "Start"),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("r", "resume_job", "Resume"),
        Binding("x", "export", "Export"),
        Binding("space", "compare", "Compare", show=False),
        Binding("m", "toggle_smoothing", "Smooth"),
        Binding("i", "show_manifest", "Manifest", show=False),
    ]

    session_file = None  # set by the app before mounting

    class MachineStats(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, TrainPane.MachineStats)

    class ExportPrepared(Message):
        """What the export dialog shows: the base model, its parameter count, the expected sizes."""

        def __init__(self, job_id: str, base_model: str, params: int | None, sizes: dict[str, int | None]) -> None:
            super().__init__()
            self.job_id, self.base_model, self.params, self.sizes = job_id, base_model, params, sizes

    class JobLaunched(Message):
        def __init__(self, job_id: str, error: str = "") -> None:
            super().__init__()
            self.job_id, self.error = job_id, error

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.selected_job: str | None = None
        self.compare: set[str] = set()
        self.histories: dict[str, JobUpdateData] = {}
        self.statuses: dict[str, jobs.JobStatus] = {}
        self._filling = False
        self.problems: list[str] = []
        self.manifests: dict[str, dict[str, Any] | None] = {}
        self.model_choices: list[Any] = []
        self.pull_jobs: dict[str, str] = {}  # Hub pulls started here: job id -> running | how it ended
        self.pull_repos: dict[str, str] = {}  # ... and what each downloads
        self._show_next: str | None = None  # a job just started, to put the cursor on once listed
        self._recorded: set[str] = set()  # export jobs listed in the session (or already ended when seen)
        self.listed: list[jobs.JobStatus] = []  # the jobs as last listed, oldest first
        self.following: set[str] = set()  # jobs followed now (until their Ended is handled)
        self.read_to_end: set[str] = set()  # jobs the follower read until they ended
        self.smoothed = True  # the chart: a smoothed line over the raw points (m: raw points only)
        self.drawn: list[str] = []  # the chart's series, by label, as last drawn

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="train-body"):
            with Vertical(id="train-side"):
                yield Label("Runs", classes="side-title")
                yield ListView(id="run-list")
                yield Label("Jobs", classes="side-title")
                table = DataTable(id="job-table", cursor_type="row", zebra_stripes=False)
                table.add_columns("job", "state")
                yield table
            with TabbedContent(id="train-tabs", initial="train-live"):
                with TabPane("Live", id="train-live"):
                    yield Static(format_live(None, {}, []), id="live-stats", markup=False)
                    yield ProgressBar(id="live-progress", total=1, show_eta=False)  # idle: still, not pulsing
                    yield PlotextPlot(id="loss-chart")
                    yield Static("", id="live-log", markup=False)
                    yield Static("", id="machine", markup=False)
                with TabPane("Record", id="train-record"):
                    with VerticalScroll(id="record-scroll"):
                        yield Static(record_text(None, None, {}), id="record", markup=False)
                with TabPane("Settings", id="train-settings"):
                    yield Static("", id="form-problems", markup=False)
                    with VerticalScroll(id="run-form"):
                        for name, kind, help_text in FIELDS:
                            with Horizontal(classes="form-row"):
                                yield Label(name, classes="form-label")
                                if name in CHOICES:
                                    yield Select(
                                        [(c, c) for c in CHOICES[name]],
                                        id=_wid(name),
                                        allow_blank=False,
                                        compact=True,
                                        tooltip=help_text,
                                    )
                                elif kind == "bool":
                                    yield Checkbox("", id=_wid(name), compact=True, tooltip=help_text)
                                elif kind == "bool | None":  # unset = auto
                                    yield Select(
                                        [(c, c) for c in TRISTATE],
                                        id=_wid(name),
                                        allow_blank=False,
                                        compact=True,
                                        tooltip=help_text,
                                    )
                                elif name == "base_model":  # typed, completed, or picked from the list
                                    yield Input(id=_wid(name), compact=True, tooltip=help_text)
                                    yield Select(
                                        [],
                                        id="base-model-pick",
                                        prompt="pick a model",
                                        compact=True,
                                        tooltip="Models this machine has (persona-tui models)",
                                    )
                                else:
                                    yield Input(id=_wid(name), compact=True, tooltip=help_text)
        yield JobFollower(interval=FOLLOW_S)

    def on_mount(self) -> None:
        self._fill_runs()
        self.query_one(JobFollower).watch_jobs(self.workspace, ("train", "export"), key=LIST_KEY)
        self.watch_machine()
        self.list_base_models()

    # -- the base model: the list of `persona-tui models`, and a pull for a Hub id not here ----
    class ModelsListed(Message):
        def __init__(self, choices: list[Any]) -> None:
            super().__init__()
            self.choices = choices

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-models")
    def list_base_models(self) -> None:
        """The same list as `persona-tui models SESSION` (it reads the HF cache: off the UI thread)."""
        from trainers.hub_job import available_models

        self.post_message(self.ModelsListed(available_models(self.session)))

    def on_train_pane_models_listed(self, message: ModelsListed) -> None:
        from textual.suggester import SuggestFromList

        usable = [m for m in message.choices if m.usable]
        self.model_choices = message.choices
        pick = self.query_one("#base-model-pick", Select)
        with pick.prevent(Select.Changed):
            pick.set_options([(f"{m.name}  ({m.kind})", m.name) for m in usable])
        self.query_one(f"#{_wid('base_model')}", Input).suggester = SuggestFromList(
            [m.name for m in usable], case_sensitive=False
        )

    @on(Select.Changed, "#base-model-pick")
    def _base_model_picked(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != Select.BLANK:
            self.query_one(f"#{_wid('base_model')}", Input).value = str(event.value)

    @on(Input.Submitted, "#f-base_model")
    def _base_model_submitted(self, event: Input.Submitted) -> None:
        self.offer_pull(event.value.strip())

    def offer_pull(self, name: str) -> bool:
        """Ask to download a Hub id that is not on this machine; True when the question was asked."""
        from engines.hub import REPO_ID, cached_snapshot

        repo, _, revision = name.partition("@")
        if (
            not REPO_ID.match(repo)
            or Path(name).expanduser().exists()
            or cached_snapshot(repo, "model", revision or "main")
        ):
            return False
        from persona_tui.screens.choice import ChoiceScreen

        def answered(choice: str | None) -> None:
            if choice == "pull":
                self.start_pull(repo, revision or None)

        self.app.push_screen(
            ChoiceScreen(
                "Download the base model?",
                f"{name} is not on this machine. Download its config, tokenizer and safetensors from the Hugging Face "
                "Hub into the HF cache, as a job? (A gated model needs HF_TOKEN or 'hf auth login'.)",
                [("pull", "Download", "primary"), ("no", "Cancel", "default")],
                cancel_key="no",
                hotkeys={"y": "pull", "n": "no"},
            ),
            answered,
        )
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-pull")
    def start_pull(self, repo: str, revision: str | None) -> None:
        """Start the pull job; the follower follows it to its end (it goes on if the app quits)."""
        from trainers.hub_job import create_pull_job

        try:
            job_dir = create_pull_job(repo, "model", revision, self.workspace)
            jobs.start_job(job_dir)
        except (ValueError, OSError) as e:
            self.post_message(self.PullDone("", repo, "failed", str(e)))
            return
        self.post_message(self.PullDone(job_dir.name, repo, "running"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-pull")
    def pull_ended(self, job_id: str, repo: str, status: jobs.JobStatus) -> None:
        """Read the models list again (the pulled model is in it now), then say how the pull ended."""
        from trainers.hub_job import available_models

        self.post_message(self.ModelsListed(available_models(self.session)))
        self.post_message(self.PullDone(job_id, repo, status.state, status.error))

    class PullDone(Message):
        """A pull started from the form: running, or how it ended."""

        def __init__(self, job_id: str, repo: str, state: str, error: str = "") -> None:
            super().__init__()
            self.job_id, self.repo, self.state, self.error = job_id, repo, state, error

    def on_train_pane_pull_done(self, message: PullDone) -> None:
        if message.job_id:
            self.pull_jobs[message.job_id] = message.state
        if message.state == "running":
            self.pull_repos[message.job_id] = message.repo
            self.query_one(JobFollower).follow(self._job_dir(message.job_id), key=PULL_PREFIX + message.job_id)
            self.notify(
                f"Downloading {message.repo} as job {message.job_id}; start the run when it is done.", markup=False
            )
        elif message.state == "finished":
            self.notify(f"{message.repo} is downloaded: s starts the run.", markup=False)
        else:
            self.notify(
                message.error or f"the download {message.state}",
                title=f"{message.repo} not downloaded",
                severity="error",
                markup=False,
                timeout=15,
            )

    @property
    def session(self):
        return self.session_file.session

    @property
    def workspace(self) -> Path:
        return self.session_file.workspace

    def selected_run(self) -> RunSpec | None:
        lv = self.query_one("#run-list", ListView)
        if lv.index is None or not self.session.runs:
            return None
        return self.session.runs[min(lv.index, len(self.session.runs) - 1)]

    # -- runs and the form ----------------------------------------------------------------
    async def reread_session(self) -> None:
        """Another pane changed the session's runs: list them again."""
        self._fill_runs()

    def _fill_runs(self, select: str | None = None) -> None:
        lv = self.query_one("#run-list", ListView)
        lv.clear()
        for run in self.session.runs:
            lv.append(ListItem(Label(f"{run.id}  [{run.method}/{run.backend}]", markup=False)))
        if self.session.runs:
            ids = [r.id for r in self.session.runs]
            lv.index = ids.index(select) if select in ids else 0
            self._fill_form(self.session.runs[lv.index])

    @on(ListView.Highlighted, "#run-list")
    def _run_highlighted(self, event: ListView.Highlighted) -> None:
        run = self.selected_run()
        if run is not None:
            self._fill_form(run)

    def _fill_form(self, run: RunSpec) -> None:
        self._filling = True
        try:
            for name, kind, _ in FIELDS:
                value = _get(run, name)
                widget = self.query_one(f"#{_wid(name)}")
                if isinstance(widget, Select) and kind == "bool | None":
                    widget.value = str(value).lower() if isinstance(value, bool) else "auto"
                elif isinstance(widget, Select):
                    if value in CHOICES[name]:
                        widget.value = value
                elif isinstance(widget, Checkbox):
                    widget.value = bool(value)
                else:
                    widget.value = _show(value)
        finally:
            self.call_after_refresh(self._end_fill)
        self._validate(run)

    def _end_fill(self) -> None:
        self._filling = False

    def _validate(self, run: RunSpec, parse_errors: dict[str, str] | None = None) -> None:
        problems = [f"run {run.id!r}: {n} {e}" for n, e in (parse_errors or {}).items()]
        problems += rs.validate_run(run, self.session)
        self.problems = problems
        for name, _, _ in FIELDS:
            bad = any(f": {name} " in p for p in problems)
            self.query_one(f"#{_wid(name)}").set_class(bad, "-invalid")
        text = "\n".join(f"✗ {p.split(': ', 1)[-1]}" for p in problems) or "✓ ready to start (s)"
        self.query_one("#form-problems", Static).update(text)
        self.query_one("#form-problems").set_class(bool(problems), "-problems")

    def _field_changed(self, widget_id: str, value: Any) -> None:
        if self._filling:
            return
        run = self.selected_run()
        if run is None:
            return
        name = next(n for n, _, _ in FIELDS if _wid(n) == widget_id)
        kind = next(k for n, k, _ in FIELDS if n == name)
        errors = {}
        try:
            if kind == "bool | None":
                typed = {"auto": None, "true": True, "false": False}[value]
            else:
                typed = parse_field(kind, value) if isinstance(value, str) and kind != "str" else value
        except ValueError:
            errors[name] = f"is {value!r}; it must be {'a whole number' if kind == 'int' else 'a number'}."
            typed = None
        if not errors and _get(run, name) != typed:
            _set(run, name, typed)
            self.post_message(SessionChanged(f"run {run.id}: {name}"))
            if name in ("method", "backend"):
                self.query_one("#run-list", ListView).highlighted_child.query_one(Label).update(
                    f"{run.id}  [{run.method}/{run.backend}]"
                )
        self._validate(run, errors)

    def flush_edit(self, widget: Widget) -> None:
        """Apply the focused field's text now (the app calls this before quitting)."""
        if isinstance(widget, Input):
            self._input_changed(Input.Changed(widget, widget.value))

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("f-"):
            self._field_changed(event.input.id, event.value)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id and event.select.id.startswith("f-") and event.value != Select.BLANK:
            self._field_changed(event.select.id, event.value)

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id and event.checkbox.id.startswith("f-"):
            self._field_changed(event.checkbox.id, event.value)

    def action_new_run(self) -> None:
        run = RunSpec(id=make_id("run", [r.id for r in self.session.runs], fallback="run"))
        if self.session.datasets:
            run.datasets = [self.session.datasets[0].id]
        self.session.runs.append(run)
        self.post_message(SessionChanged(f"added run {run.id}", save_now=True))
        self._fill_runs(select=run.id)
        self.query_one(TabbedContent).active = "train-settings"

    # -- jobs -----------------------------------------------------------------------------
    def action_start(self) -> None:
        run = self.selected_run()
        if run is None:
            self.notify("Add a run first (n).", severity="warning")
            return
        self._validate(run)
        if self.problems:
            self.notify("\n".join(self.problems[:4]), title="Fix the run first", severity="error", markup=False)
            self.query_one(TabbedContent).active = "train-settings"
            return
        if run.backend != "openai" and self.offer_pull(run.base_model):
            return
        self.launch(run.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-launch")
    def launch(self, run_id: str) -> None:
        """Validate against the machine (imports torch to count GPUs), create and start the job."""
        from trainers.train.job import RunSpecError, create_train_job
        from trainers.train.memory_estimate import check_run

        run = self.session.run(run_id)
        verdict = check_run(run) if run is not None else None
        if verdict and verdict[0] == "error":  # will not fit: say what to change instead of starting
            self.post_message(self.JobLaunched("", f"run {run_id!r}: {verdict[1]}"))
            return
        try:
            job_dir = create_train_job(self.session_file, run_id)
            jobs.start_job(job_dir)
        except RunSpecError as e:
            self.post_message(self.JobLaunched("", "\n".join(e.problems)))
            return
        except (ValueError, OSError) as e:
            self.post_message(self.JobLaunched("", str(e)))
            return
        self.post_message(self.JobLaunched(job_dir.name))

    def on_train_pane_job_launched(self, message: JobLaunched) -> None:
        if message.error:
            self.notify(message.error, title="Not started", severity="error", markup=False, timeout=10)
            return
        self.show_job(message.job_id)
        self.query_one(TabbedContent).active = "train-live"
        self.notify(f"Started {message.job_id}; it runs on if you quit.")

    def show_job(self, job_id: str) -> None:
        """Put the Live view on a job now (a job just started: before its first step) and keep the
        jobs table's cursor on it, so the next listing does not move the view back to the row
        the cursor was on."""
        self.selected_job = job_id
        self._show_next = job_id
        try:
            self.statuses[job_id] = jobs.read_status(self._job_dir(job_id))
        except ValueError:
            pass
        table = self.query_one("#job-table", DataTable)
        if job_id in self.statuses and table.row_count:
            try:
                table.move_cursor(row=table.get_row_index(job_id), animate=False)
                self._show_next = None
            except RowDoesNotExist:  # not listed yet: the next listing puts the cursor there
                pass
        self._sync_follow()
        self._draw_live()
        self._draw_record()

    def _job_dir(self, job_id: str) -> Path:
        return jobs.jobs_root(self.workspace) / job_id

    def _cursor_job(self) -> str | None:
        table = self.query_one("#job-table", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def action_cancel_job(self) -> None:
        job_id = self._cursor_job() or self.selected_job
        if job_id and jobs.cancel_job(self._job_dir(job_id)):
            self.notify(f"Cancelling {job_id}: it saves a checkpoint first.")
        elif job_id:
            self.notify(f"{job_id} is not running.", severity="warning")

    def action_resume_job(self) -> None:
        job_id = self._cursor_job() or self.selected_job
        if job_id:
            self.resume(job_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-launch")
    def resume(self, job_id: str) -> None:
        from trainers.train.job import resume_train_job

        try:
            resume_train_job(self._job_dir(job_id))
        except (ValueError, OSError) as e:
            self.post_message(self.JobLaunched("", str(e)))
            return
        self.post_message(self.JobLaunched(job_id))

    # -- export: x on a finished run opens the dialog; the export job shows in the Live view -----
    def action_export(self) -> None:
        job_id = self._cursor_job() or self.selected_job
        status = self.statuses.get(job_id or "")
        if status is None or status.kind != "train" or status.state != "finished":
            self.notify("Pick a finished training job to export (x).", severity="warning")
            return
        from trainers.train.reader import adapter_dir

        if adapter_dir(status.dir) is None:
            self.notify(f"{job_id} has no adapter to export.", severity="warning")
            return
        self.prepare_export(job_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-export")
    def prepare_export(self, job_id: str) -> None:
        """The base model's parameter count (its config or GGUF header, no weights) for the sizes."""
        from trainers.export.job import BITS_PER_WEIGHT, expected_size, parameter_count

        try:
            base = str((jobs.read_spec(self._job_dir(job_id)).get("run") or {}).get("base_model") or "")
        except jobs.JobError:
            base = ""  # the dialog says the count is unknown; the export job names what is wrong
        params = parameter_count(base) if base else None
        self.post_message(
            self.ExportPrepared(job_id, base, params, {q: expected_size(params, q) for q in BITS_PER_WEIGHT})
        )

    def on_train_pane_export_prepared(self, message: ExportPrepared) -> None:
        from persona_tui.screens.export import ExportScreen

        def chosen(choice: dict[str, Any] | None) -> None:
            if choice is not None:
                self.start_export(message.job_id, choice)

        self.app.push_screen(ExportScreen(message.job_id, message.base_model, message.params, message.sizes), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-launch")
    def start_export(self, job_id: str, choice: dict[str, Any]) -> None:
        from trainers.export.job import create_export_job

        try:
            job_dir = create_export_job(
                self.workspace,
                session=self.session_file.path,
                train_job=job_id,
                quants=choice["quants"],
                options=choice["options"],
            )
            jobs.start_job(job_dir)
        except (ValueError, OSError) as e:
            self.post_message(self.JobLaunched("", str(e)))
            return
        self.post_message(self.JobLaunched(job_dir.name))

    def _record_export(self, job_id: str) -> None:
        """List a finished export under its run in the session, as `persona-tui export` does."""
        from trainers.export.job import record_export

        self._recorded.add(job_id)
        try:
            entry = record_export(self.session_file, self._job_dir(job_id))
        except (ValueError, OSError) as e:
            self.notify(
                f"The export is done but could not be listed in the session: {e}", severity="warning", markup=False
            )
            return
        if entry is not None:
            self.post_message(SessionChanged(f"listed export {job_id}"))

    def action_compare(self) -> None:
        job_id = self._cursor_job()
        if job_id:
            self.compare.symmetric_difference_update({job_id})
            self._sync_follow()
            if job_id in self.statuses:  # the mark now, not at the next listing of the jobs
                table = self.query_one("#job-table", DataTable)
                table.update_cell_at(Coordinate(table.cursor_row, 1), self._state_cell(self.statuses[job_id]))
            self._draw_chart()
            self._draw_record()
            self._flag_differences(job_id)

    def _flag_differences(self, job_id: str) -> None:
        """Say so when a job overlaid on the chart was made with other packages, data or hardware."""
        flags = manifest_differences(self.manifests.get(self.selected_job or ""), self.manifests.get(job_id))
        if job_id in self.compare and job_id != self.selected_job and flags:
            self.notify(
                "\n".join(flags[:4]) + ("\n…" if len(flags) > 4 else ""),
                markup=False,
                timeout=8,
                title=f"{short_job_id(job_id)} was not made like {short_job_id(self.selected_job or '')}",
                severity="warning",
            )

    def _state_cell(self, s: Any) -> Text:
        """A job's state cell, marked ◆ when it is overlaid on the chart (in this cell: the job
        column has no room to spare at 80x24)."""
        state = job_state_cell(s)
        return Text.assemble(("◆ ", "bold"), state) if s.id in self.compare else state

    @on(DataTable.RowHighlighted, "#job-table")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.selected_job = str(event.row_key.value)
            self._sync_follow()
            self._draw_live()
            self._draw_record()

    # -- following files (the JobFollower reads them in threads and posts; handlers draw) -----
    def _wanted(self) -> set[str]:
        """The jobs the Live view shows: the selected one and those overlaid, or else the newest
        running job (the newest job when none runs)."""
        wanted = {self.selected_job, *self.compare} - {None}
        if not wanted and self.listed:
            running = [s for s in self.listed if not s.terminal]
            wanted = {(running or self.listed)[-1].id}
        return {str(j) for j in wanted}

    def _sync_follow(self) -> None:
        """Follow every wanted job the follower does not follow yet, unless it was read to its end
        and has not run again since (a resumed job is followed again from its first event)."""
        for job_id in self._wanted():
            if job_id in self.following:
                continue
            status = self.statuses.get(job_id)
            if job_id in self.read_to_end and (status is None or status.terminal):
                continue
            self.read_to_end.discard(job_id)
            self.histories[job_id] = JobUpdateData()  # the follower reads the events from the start
            self.following.add(job_id)
            self.query_one(JobFollower).follow(
                self._job_dir(job_id), key=job_id, events=True, manifest=True, log=recent_log
            )

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-machine")
    def watch_machine(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                self.post_message(self.MachineStats(machine_text()))
            except Exception as e:  # noqa: BLE001 - the panel says so instead of dying
                self.post_message(self.MachineStats(f"machine stats unavailable: {e}"))
            time.sleep(MACHINE_S)

    @on(JobFollower.Listed)
    def _jobs_listed(self, message: JobFollower.Listed) -> None:
        table = self.query_one("#job-table", DataTable)
        keep = self._cursor_job()
        table.clear()
        self.listed = message.statuses
        for s in message.statuses:
            if s.id not in self.following:  # a followed job's own reads are newer
                self.statuses[s.id] = s
            table.add_row(short_job_id(s.id), self._state_cell(s), key=s.id)
        ids = [s.id for s in message.statuses]
        if self._show_next in ids:  # a job started here goes before where the cursor was
            keep, self._show_next = self._show_next, None
        target = keep if keep in ids else self.selected_job if self.selected_job in ids else (ids[-1] if ids else None)
        if target:
            table.move_cursor(row=ids.index(target), animate=False)
            if self.selected_job is None:
                self.selected_job = target
        self._sync_follow()

    def _shown(self, job_id: str) -> bool:
        return job_id == self.selected_job or job_id in self.compare

    @on(JobFollower.Events)
    def _job_events(self, message: JobFollower.Events) -> None:
        if self.histories.setdefault(message.key, JobUpdateData()).absorb(message.events) and self._shown(message.key):
            self._draw_live()

    @on(JobFollower.Log)
    def _job_log(self, message: JobFollower.Log) -> None:
        self.histories.setdefault(message.key, JobUpdateData()).log = message.text
        if self._shown(message.key):
            self._draw_live()

    @on(JobFollower.Progress)
    def _job_progress(self, message: JobFollower.Progress) -> None:
        if message.key.startswith(PULL_PREFIX):
            return
        previous = self.statuses.get(message.key)
        self.statuses[message.key] = s = message.status
        if (
            s.kind == "export"
            and s.state == "finished"
            and message.key not in self._recorded
            and previous is not None
            and not previous.terminal
        ):  # ended while this pane watched
            self._record_export(message.key)
        if self._shown(message.key):
            self._draw_live()

    @on(JobFollower.Ended)
    def _job_ended(self, message: JobFollower.Ended) -> None:
        if message.key.startswith(PULL_PREFIX):  # a Hub pull started from the form ended
            job_id = message.key.removeprefix(PULL_PREFIX)
            self.pull_ended(job_id, self.pull_repos.get(job_id, job_id), message.status)
            return
        self.following.discard(message.key)
        self.read_to_end.add(message.key)

    @on(JobFollower.Manifest)
    def _job_manifest(self, message: JobFollower.Manifest) -> None:
        first = message.key not in self.manifests
        self.manifests[message.key] = message.manifest
        if self._shown(message.key):
            self._draw_record()
            if first:
                self._flag_differences(message.key)

    def _draw_record(self) -> None:
        """The Record tab: what made the selected job, and how each compared job differs from it."""
        compared = {j: self.manifests.get(j) for j in sorted(self.compare) if j != self.selected_job}
        self.query_one("#record", Static).update(
            record_text(
                self.selected_job,
                self.manifests.get(self.selected_job or ""),
                compared,
                loaded=(self.selected_job or "") in self.manifests,
            )
        )

    def action_show_manifest(self) -> None:
        """The selected job's whole manifest in a dialog."""
        from rich.syntax import Syntax

        from persona_tui.screens.report import ReportScreen

        job_id = self._cursor_job() or self.selected_job
        manifest = self.manifests.get(job_id or "")
        if not job_id or manifest is None:
            self.notify(
                f"{job_id or 'No job'} has no manifest yet: its worker writes one when it starts.", severity="warning"
            )
            return
        self.app.push_screen(
            ReportScreen(f"What made {job_id}", [Syntax(format_manifest(manifest), "json", word_wrap=True)])
        )

    def on_train_pane_machine_stats(self, message: MachineStats) -> None:
        self.query_one("#machine", Static).update(message.text)

    def _draw_live(self) -> None:
        job_id = self.selected_job
        d = self.histories.get(job_id or "")
        status = self.statuses.get(job_id or "")
        stats = self.query_one("#live-stats", Static)
        export = status is not None and status.kind == "export"
        stats.set_class(export, "-export")  # room for one verification line per GGUF
        if export:
            stats.update(format_export_live(status, d.checks if d else []))
        else:
            stats.update(format_live(status, d.last if d else {}, d.evals if d else [], d.steps if d else []))
        bar = self.query_one("#live-progress", ProgressBar)
        if status is not None and d is not None:
            total = d.last.get("max_steps") or status.total or None
            if total is None and status.terminal:  # a pulsing bar redraws ~20 times a second
                bar.update(total=1, progress=1 if status.state == "finished" else 0)
            else:
                bar.update(total=total, progress=d.last.get("step", status.done))
        self.query_one("#live-log", Static).update((d.log if d else "").rstrip())
        self._draw_chart()

    def action_toggle_smoothing(self) -> None:
        """m: a smoothed line over the raw points, or the raw points joined (what the run logged)."""
        self.smoothed = not self.smoothed
        self._draw_chart()
        self.notify(
            "Chart: smoothed line over the raw points." if self.smoothed else "Chart: raw loss only.", timeout=2
        )

    def _draw_chart(self) -> None:
        """Train loss per job: raw points (grey) under their centred moving mean, the window of
        `trainers.train.loss_curve` (the one the run's summary averages); eval loss as dots."""
        from trainers.train.loss_curve import smooth, summary_window

        chart = self.query_one("#loss-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss" if self.smoothed else "loss (raw; m: smoothed)")
        plt.xlabel("step")
        drawn = []
        shown = [j for j in [self.selected_job, *sorted(self.compare)] if j]
        for job_id in dict.fromkeys(shown):
            d = self.histories.get(job_id)
            if not d or not d.steps:
                continue
            label = (d.run or job_id)[:12]
            xs, ys = [s for s, _ in d.steps], [v for _, v in d.steps]
            w = summary_window(len(ys))
            if self.smoothed and w > 1:
                plt.scatter(xs, ys, marker="braille", color="gray")
                drawn.append(f"{label} raw")
                plt.plot(xs, smooth(ys, w), label=f"{label} {w | 1}-step mean", marker="braille")
                drawn.append(f"{label} {w | 1}-step mean")
            else:
                plt.plot(xs, ys, label=f"{label} train", marker="braille")
                drawn.append(f"{label} train")
            if d.evals:
                plt.scatter([s for s, _ in d.evals], [v for _, v in d.evals], label=f"{label} eval", marker="dot")
                drawn.append(f"{label} eval")
        self.drawn = drawn
        chart.refresh()


class JobUpdateData:
    """A job's history as read from its events (the pane keeps one per job it followed)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.last: dict[str, Any] = {}
        self.run = ""
        self.log = ""
        self.checks: list[dict[str, Any]] = []  # an export's verification, one per GGUF checked

    def absorb(self, events: list[dict[str, Any]]) -> bool:
        """Add new events; a resumed run's steps replace the ones after its checkpoint."""
        changed = False
        for e in events:
            kind = e.get("event")
            if kind == "train_begin":
                self.run = str(e.get("run", self.run))
                resumed = e.get("resumed_from")
                if isinstance(resumed, int):
                    self.steps = [(s, v) for s, v in self.steps if s <= resumed]
                    self.evals = [(s, v) for s, v in self.evals if s <= resumed]
                changed = True
            elif kind == "step" and isinstance(e.get("step"), int):
                if isinstance(e.get("loss"), (int, float)):
                    self.steps.append((e["step"], float(e["loss"])))
                self.last = e
                changed = True
            elif kind == "export_step" and "passed" in e:
                self.checks.append(e)
                changed = True
            elif kind == "eval" and isinstance(e.get("eval_loss"), (int, float)):
                self.evals.append((int(e.get("step", 0)), float(e["eval_loss"])))
                changed = True
        return changed
