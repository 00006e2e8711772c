"""Evaluate pane: pick models and evaluations, run them as jobs, read the results, compare.

Three tabs, each usable at 80x24:
- "Run": the models (the base model, the session's engines, every finished training job) and the
  evaluations (kinds) to run; `r` creates one evaluation per kind in the session, their eval jobs,
  and one queue job that runs them one after another (evaluators.evaluate.queue); `x` runs the
  format-comparison experiment for the chosen persona at the size typed beside it as one job
  (evaluators.experiments.job); `c` cancels either. Both are detached workers: quit the app and
  they go on; reopen it and the pane follows them again (a `JobFollower` reads their files) and
  records the summaries of evaluations that ended meanwhile.
- "Results": the selected result as tables (evaluators.tables; the format table for an
  experiment) and a terminal bar chart (textual-plotext): per-trait knowledge vs expression
  bars (`m` shows the next model), win rates, the perplexity matrix, the format study's rates.
- "History": every earlier result — eval jobs with their scores.json, summaries kept under the
  session's evaluations, experiments' result.json — newest first; Enter shows one.

Under a result: what made it (its job's manifest in short; `i` opens the whole manifest) and a
warning when the models it compares were trained with other packages, data or hardware.

Nothing here evaluates or imports torch: eval jobs are detached workers (evaluators.worker), and
thread workers only follow files and post messages (progress merges while the app is busy).
A finished evaluation's summary is appended to its evaluation in the session, as the CLI does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    ProgressBar,
    Select,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual_plotext import PlotextPlot

from evaluators.evaluate.presets import KINDS, model_choices, new_eval_spec
from evaluators.evaluate.queue import PARENT_KINDS
from evaluators.results import ResultEntry, list_results
from persona_tui.messages import SessionChanged
from persona_tui.widgets.job_follower import JobFollower
from sessions.model import Session
from supervisor import jobs


def summary_table(entry: ResultEntry) -> Any:
    """A kept summary (its job folder is gone): model x number, as stored."""
    from rich.table import Table

    table = Table(title=f"{entry.title} · summary kept in the session", title_justify="left")
    table.add_column("Model")
    table.add_column("Values")
    for model, values in entry.summary.items():
        table.add_row(
            model, ", ".join(f"{k} {v}" for k, v in (values or {}).items()) if isinstance(values, dict) else str(values)
        )
    return table


def renderables(entry: ResultEntry, data: dict[str, Any] | None) -> list[Any]:
    if entry.key.startswith("exp:") and data is not None:
        from evaluators.experiments.report import tables_for_result

        return tables_for_result(data)
    if data is None:
        return [summary_table(entry)] if entry.summary else [Text(f"{entry.title}: no scores yet ({entry.state}).")]
    from evaluators.tables import problems_text, tables_for

    out: list[Any] = list(tables_for(data))
    extra = problems_text(data)
    if extra.plain:
        out.append(extra)
    return out


def result_jobs(entry: ResultEntry, data: dict[str, Any] | None, workspace: Path) -> tuple[Path | None, list[Path]]:
    """The job that made a result (an eval job; none for an experiment) and the jobs whose products
    it compares: the training jobs behind an eval's adapters, or an experiment's training jobs."""
    from sessions.manifest import source_jobs

    root = jobs.jobs_root(workspace)
    if entry.key.startswith("job:"):
        job_dir = root / entry.key[len("job:") :]
        try:
            spec = jobs.read_spec(job_dir)
        except ValueError:
            return job_dir, []
        return job_dir, source_jobs(job_dir, spec)
    if entry.key.startswith("exp:") and data:
        used = data.get("jobs") or {}
        return None, [
            root / str(j) for k, j in sorted(used.items()) if str(k).startswith("train:") and (root / str(j)).is_dir()
        ]
    return None, []


def provenance(entry: ResultEntry, data: dict[str, Any] | None, workspace: Path) -> list[Any]:
    """Under a result: what made it (the eval job's manifest, in short; `i` opens all of it), and a
    warning naming what differs when the compared models were trained with other packages, data
    files or hardware (sessions.manifest.manifest_differences)."""
    from sessions.manifest import job_differences, manifest_summary, read_manifest

    job_dir, sources = result_jobs(entry, data, workspace)
    out: list[Any] = []
    flags = job_differences(sources)
    if flags:
        text = Text("⚠ the compared models were not made alike:\n", style="bold yellow")
        text.append("\n".join(f"  {line}" for line in flags), style="yellow")
        out.append(text)
    if job_dir is not None:
        lines = manifest_summary(read_manifest(job_dir))
        out.append(
            Text(
                "made with: " + " · ".join(lines[:2]) + "\n" + " · ".join(lines[-2:]) + "  (i: all of it)", style="dim"
            )
        )
    return out


def chart_models(data: dict[str, Any] | None) -> list[str]:
    """The models a per-trait chart can show, in order."""
    if not data or data.get("kind") != "traits":
        return []
    return list(dict.fromkeys(r["model"] for r in data.get("rows", [])))


def draw_chart(plt: Any, entry: ResultEntry, data: dict[str, Any] | None, model_index: int = 0) -> str:
    """Draw the result's bars on a plotext module (a PlotextPlot's `plt`); return the chart's title
    ("" when this kind has no chart)."""
    plt.clear_data()
    plt.clear_figure()
    if not data:
        return ""
    markers = ["█", "▓", "▒", "░", "▞", "▚"]
    if data.get("study") == "format-comparison":
        from evaluators.experiments.format_comparison import CHART_SERIES

        by_key = {r["key"]: r for r in data.get("rows", [])}
        series = [
            (label, [by_key[k]["values"].get(c) or 0.0 for c in data["columns"]])
            for k, label in CHART_SERIES
            if k in by_key
        ]
        plt.multiple_bar(
            list(data["columns"]),
            [s[1] for s in series],
            labels=[s[0] for s in series],
            marker=markers[: len(series)],
            width=0.8,
        )
        plt.ylim(0, 1.0 + 0.12 * len(series))
        title = f"{data.get('persona', '')}: rates by training format"
    elif data.get("kind") == "traits":
        models = chart_models(data)
        if not models:
            return ""
        model = models[model_index % len(models)]
        rows = [r for r in data.get("rows", []) if r["model"] == model]
        traits = [r["trait"][:14] for r in rows]
        know = [(r.get("knowledge") or {}).get("rate") or 0.0 for r in rows]
        show = [(r.get("expression") or {}).get("rate") or 0.0 for r in rows]
        plt.multiple_bar(traits, [know, show], labels=["knows", "shows"], marker=markers[:2], width=0.8)
        plt.ylim(0, 1.3)
        title = f"{model}: knows vs shows per trait" + (" (m: next model)" if len(models) > 1 else "")
    elif data.get("kind") in ("judge", "tailoring"):
        pairs = data.get("pairs", [])
        groups = list(dict.fromkeys(f"{p['criterion']}{'/' + p['group'] if p.get('group') else ''}" for p in pairs))
        models = list(dict.fromkeys(p["model"] for p in pairs))
        if not pairs:
            return ""
        values = []
        for m in models:
            rates = {
                f"{p['criterion']}{'/' + p['group'] if p.get('group') else ''}": (p.get("win") or {}).get("rate") or 0.0
                for p in pairs
                if p["model"] == m
            }
            values.append([rates.get(g, 0.0) for g in groups])
        plt.multiple_bar(groups, values, labels=[m[:20] for m in models], marker=markers[: len(models)], width=0.8)
        plt.ylim(0, 1.0 + 0.12 * len(models))
        title = f"win rate vs {data.get('baseline', 'the first model')}"
    elif data.get("kind") == "perplexity_matrix":
        cols = list(data.get("data", []))
        rows = data.get("rows", [])
        if not cols or not rows:
            return ""
        values = [[(r.get("values") or {}).get(c) or 0.0 for c in cols] for r in rows]
        plt.multiple_bar(
            [c[:16] for c in cols],
            values,
            labels=[r["model"][:20] for r in rows],
            marker=markers[: len(rows)],
            width=0.8,
        )
        title = "perplexity on held-out data (lower is better)"
    elif data.get("kind") == "drift":
        title = draw_drift(plt, data)
        if not title:
            return ""
    elif data.get("kind") == "reference":
        rows = [r for r in data.get("rows", []) if not r.get("error")]
        if not rows:
            return ""
        metrics = [("hits@1", "hits@1"), ("f1", "F1"), ("rouge_l", "ROUGE-L")]
        values = [[r.get(k) or 0.0 for k, _ in metrics] for r in rows]
        plt.multiple_bar(
            [m for _, m in metrics],
            values,
            labels=[r["model"][:20] for r in rows],
            marker=markers[: len(rows)],
            width=0.8,
        )
        plt.ylim(0, 1.0 + 0.12 * len(rows))
        title = "reference metrics"
    else:
        return ""
    if data.get("kind") != "perplexity_matrix":
        plt.yticks([0, 0.25, 0.5, 0.75, 1.0])
    plt.title(title)
    return title


DRIFT_MARKERS = (("knows", "●"), ("shows", "▲"))


def drift_series(data: dict[str, Any]) -> list[tuple[str, list[int], list[float]]]:
    """(label, turns, rates): knowledge and expression rate against turn, per model."""
    out = []
    rows = data.get("rows", [])
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["turn"])
        for measure, (word, _marker) in zip(("knowledge", "expression"), DRIFT_MARKERS):
            points = [(int(r["turn"]), (r.get(measure) or {}).get("rate")) for r in mine]
            points = [(t, v) for t, v in points if v is not None]
            if points:
                out.append((f"{model[:18]} {word}", [t for t, _ in points], [v for _, v in points]))
    return out


def draw_drift(plt: Any, data: dict[str, Any]) -> str:
    """Knowledge and expression rate against turn, one line per model and measure (the models side
    by side: base + persona prompt against the trained run is the comparison that matters)."""
    series = drift_series(data)
    if not series:
        return ""
    for label, turns, rates in series:
        marker = DRIFT_MARKERS[0][1] if label.endswith(DRIFT_MARKERS[0][0]) else DRIFT_MARKERS[1][1]
        plt.plot(turns, rates, label=label, marker=marker)
    plt.xticks(sorted({t for _, turns, _ in series for t in turns}))
    plt.ylim(0, 1.05)
    plt.xlabel("turn")
    return f"persona drift: rate by turn ({data.get('turns', '?')} turns, probes on forks)"


# ----------------------------------------------------------------------------- the pane


class EvaluatePane(Vertical):
    """Run evaluations and the format comparison; read and compare their results."""

    BINDINGS = [
        Binding("r", "run_evals", "Run"),
        Binding("x", "run_experiment", "Format study"),
        Binding("c", "cancel_run", "Cancel run", show=False),
        Binding("m", "next_model", "Next model", show=False),
        Binding("i", "show_manifest", "Manifest", show=False),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    session_file = None  # set by the app before mounting

    class Unrecorded(Message):
        """Finished evaluations of a queue or an experiment whose summaries the session lacks yet:
        (eval id, result entry) pairs, and experiment tables as (eval id, summary)."""

        def __init__(self, results: list[tuple[str, dict[str, Any]]], tables: list[tuple[str, dict[str, Any]]]) -> None:
            super().__init__()
            self.results, self.tables = results, tables

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.busy = False
        self.entries: list[ResultEntry] = []
        self.shown: ResultEntry | None = None
        self.shown_data: dict[str, Any] | None = None
        self.model_index = 0
        self.log_lines: list[str] = []
        self.last_progress: tuple[str, float, float, str, str] | None = None
        self.chart_title = ""
        self.run_job: Path | None = None  # the queue or experiment job followed now
        self.last_finished = ""  # the result key of the newest finished child, to show at the end

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with TabbedContent(id="eval-tabs", initial="eval-run"):
            with TabPane("Run", id="eval-run"):
                with Horizontal(id="eval-lists"):
                    with Vertical(classes="eval-list-box"):
                        yield Label("Models (space: pick)", classes="side-title")
                        yield SelectionList(id="eval-models", compact=True)
                    with Vertical(classes="eval-list-box"):
                        yield Label("Evaluations", classes="side-title")
                        yield SelectionList(
                            *[(label, value, value == "traits") for value, label in KINDS],
                            id="eval-kinds",
                            compact=True,
                        )
                with Horizontal(classes="eval-row"):
                    yield Select([], id="eval-persona", allow_blank=True, compact=True, prompt="persona")
                    yield Button("Run (r)", id="eval-start", compact=True, variant="primary")
                    yield Label("size", classes="eval-size-label")
                    yield Input("40", id="exp-size", compact=True, type="integer")
                    yield Button("Format study (x)", id="exp-start", compact=True)
                yield Static("Pick models and evaluations, then r.", id="eval-status", markup=False)
                yield ProgressBar(id="eval-progress", total=1, show_eta=False)  # idle: still, not pulsing
                yield Static("", id="eval-log", markup=False)
            with TabPane("Results", id="eval-results"):
                yield Static("No result shown yet: pick one in History.", id="result-title", markup=False)
                with VerticalScroll(id="result-scroll"):
                    yield Static("", id="result-tables")
                    yield PlotextPlot(id="result-chart")
            with TabPane("History", id="eval-history"):
                table = DataTable(id="history-table", cursor_type="row")
                table.add_columns("when", "result", "kind", "state")
                yield table
        yield JobFollower()

    def on_mount(self) -> None:
        self.fill_choices()
        self.refresh_history()
        self.query_one("#result-chart").display = False
        # A queue or a study started before the app was (re)opened: follow it, record what ended.
        self.query_one(JobFollower).follow_latest(
            self.workspace, PARENT_KINDS, key="run", events=True, only_running=True
        )
        self.reconcile()

    @property
    def session(self) -> Session:
        return self.session_file.session

    @property
    def workspace(self) -> Path:
        return Path(self.session_file.workspace)

    # -- choices ----------------------------------------------------------------------------
    def fill_choices(self) -> None:
        models = self.query_one("#eval-models", SelectionList)
        keep = set(models.selected)
        models.clear_options()
        choices = model_choices(self.session, self.workspace)
        if not keep:  # first fill: the base model and the newest finished run
            newest = next((ref for ref, _ in choices if ref.startswith("job:")), None)
            keep = {choices[0][0], *([newest] if newest else [])}
        models.add_options([(label, ref, ref in keep) for ref, label in choices])
        persona = self.query_one("#eval-persona", Select)
        current = persona.value
        persona.set_options([(p.id, p.id) for p in self.session.personas])
        ids = [p.id for p in self.session.personas]
        if ids:
            persona.value = current if current in ids else ids[0]

    def _persona(self) -> str:
        value = self.query_one("#eval-persona", Select).value
        return value if isinstance(value, str) else ""

    # -- history and results ----------------------------------------------------------------
    def refresh_history(self) -> None:
        self.entries = list_results(self.session, self.workspace)
        table = self.query_one("#history-table", DataTable)
        table.clear()
        for e in self.entries:
            when = time.strftime("%m-%d %H:%M", time.localtime(e.when)) if e.when else "–"
            table.add_row(when, e.title[:30], e.kind[:17], e.state[:16], key=e.key)

    async def reread_session(self) -> None:
        """Another pane changed the session's evaluations: list them again."""
        self.action_refresh()

    def action_refresh(self) -> None:
        self.fill_choices()
        self.refresh_history()

    @on(DataTable.RowSelected, "#history-table")
    def _history_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None and event.row_key.value:
            self.show(str(event.row_key.value))

    def show(self, key: str) -> None:
        """Show the result `key` (see ResultEntry.key) in the Results tab."""
        entry = next((e for e in self.entries if e.key == key), None)
        if entry is None:
            self.refresh_history()
            entry = next((e for e in self.entries if e.key == key), None)
        if entry is None:
            self.notify(f"{key} has no result to show.", severity="warning")
            return
        self.shown, self.shown_data, self.model_index = entry, entry.load(), 0
        try:
            parts = renderables(entry, self.shown_data)
        except ValueError as e:
            parts = [Text(str(e), style="red")]
        parts += provenance(entry, self.shown_data, self.workspace)
        self.query_one("#result-title", Static).update(f"{entry.title} · {entry.kind} · {entry.state}")
        self.query_one("#result-tables", Static).update(Group(*parts))
        self._draw_chart()
        self.query_one("#eval-tabs", TabbedContent).active = "eval-results"
        self.query_one("#result-scroll").focus()  # keys (m, arrows to scroll) reach the results

    def _draw_chart(self) -> None:
        chart = self.query_one("#result-chart", PlotextPlot)
        title = draw_chart(chart.plt, self.shown, self.shown_data, self.model_index) if self.shown else ""
        self.chart_title = title
        chart.display = bool(title)
        chart.refresh()

    def action_next_model(self) -> None:
        if chart_models(self.shown_data):
            self.model_index += 1
            self._draw_chart()

    def action_show_manifest(self) -> None:
        """The whole manifest of the shown result's job, and of the jobs whose models it compares."""
        from persona_tui.screens.report import ReportScreen
        from sessions.manifest import format_manifest, read_manifest

        if self.shown is None:
            self.notify("Show a result first (History, Enter).", severity="warning")
            return
        job_dir, sources = result_jobs(self.shown, self.shown_data, self.workspace)
        parts = []
        for d in ([job_dir] if job_dir else []) + sources:
            m = read_manifest(d)
            parts.append(Text(f"{d.name}\n", style="bold"))
            parts.append(Text(format_manifest(m) if m else "no manifest.json (made before jobs recorded one)"))
        if not parts:
            self.notify(f"{self.shown.title} has no job folder, so no manifest.", severity="warning")
            return
        self.app.push_screen(ReportScreen(f"What made {self.shown.title}", parts))

    # -- running evaluations ----------------------------------------------------------------
    @on(Button.Pressed, "#eval-start")
    def _start_pressed(self) -> None:
        self.action_run_evals()

    @on(Button.Pressed, "#exp-start")
    def _experiment_pressed(self) -> None:
        self.action_run_experiment()

    def _refuse_if_busy(self) -> bool:
        if self.busy:
            self.notify(
                "An evaluation is running; wait for it to end (c cancels it; it goes on if you quit).",
                severity="warning",
            )
        return self.busy

    def action_run_evals(self) -> None:
        """Add one evaluation per chosen kind to the session, create their jobs and one queue job
        that runs them in turn (evaluators.evaluate.queue: a detached worker, so quitting goes on)."""
        if self._refuse_if_busy():
            return
        from evaluators.evaluate.job import create_eval_job
        from evaluators.evaluate.queue import create_queue_job
        from evaluators.experiments.models import run_resolver

        models = list(self.query_one("#eval-models", SelectionList).selected)
        kinds = list(self.query_one("#eval-kinds", SelectionList).selected)
        if not kinds:
            self.notify("Pick at least one evaluation (space toggles).", severity="warning")
            return
        created: list[tuple[str, Path]] = []
        problems: list[str] = []
        resolve = run_resolver(self.session, self.workspace)
        for kind in kinds:
            try:
                spec = new_eval_spec(kind, models, self.session, self.workspace, self._persona())
            except ValueError as e:
                problems.append(f"{kind}: {e}")
                continue
            self.session.evals.append(spec)
            try:
                created.append((spec.id, create_eval_job(self.session_file, spec.id, resolve)))
            except ValueError as e:
                self.session.evals.remove(spec)
                lines = getattr(e, "problems", None) or [str(e)]
                problems.append(f"{kind}: {lines[0]}")
        if problems:
            self.notify("\n".join(problems), title="Not started", severity="error", markup=False, timeout=10)
        if not created:
            return
        self.post_message(SessionChanged(f"added evaluations {', '.join(i for i, _ in created)}", save_now=True))
        try:
            queue = create_queue_job(self.workspace, self.session_file.path, created)
            jobs.start_job(queue)
        except (OSError, ValueError) as e:
            self.notify(str(e), title="Not started", severity="error", markup=False, timeout=10)
            return
        self._follow_run(queue, f"queued {len(created)} evaluation(s): {', '.join(i for i, _ in created)}")

    def _follow_run(self, job_dir: Path, text: str, start: bool = True) -> None:
        """Show `job_dir` (a queue or study) as the run in progress; `start`: have the follower
        follow it (a job found by `follow_latest` is followed by it already)."""
        self.busy = True
        self.run_job = job_dir.resolve()
        self.last_finished = ""
        self.log_lines = []
        self._set_status(text)
        if start:
            self.query_one(JobFollower).follow(job_dir, key="run", events=True)

    def action_cancel_run(self) -> None:
        """Cancel the queue or study followed now (its running job stops; the rest never start)."""
        if self.run_job is None or not self.busy:
            self.notify("Nothing is running here to cancel.", severity="warning")
            return
        try:
            if jobs.cancel_job(self.run_job):
                self._set_status("cancelling…")
        except ValueError as e:
            self.notify(str(e), severity="error", markup=False)

    @on(JobFollower.Found)
    def _run_found(self, message: JobFollower.Found) -> None:
        status = message.status
        if message.key != "run" or status is None or status.terminal or self.busy:
            return
        what = "the format study" if status.kind == "experiment" else "the evaluation queue"
        self._follow_run(status.dir, f"following {what} {status.id} ({status.state})", start=False)

    @on(JobFollower.Progress)
    def _run_progress(self, message: JobFollower.Progress) -> None:
        status = message.status
        if message.key != "run" or status.dir != self.run_job:
            return
        label = "study" if status.kind == "experiment" else "queue"
        self.last_progress = (label, status.done, status.total, status.message, status.state)
        self._set_status(f"{label} {status.state}: {status.message}"[:200])
        if status.total:
            self.query_one("#eval-progress", ProgressBar).update(total=status.total, progress=status.done)

    @on(JobFollower.Events)
    def _run_events(self, message: JobFollower.Events) -> None:
        if message.key != "run":
            return
        ended = [e for e in message.events if e.get("event") == "child_ended"]
        for e in ended:
            label = e.get("eval") or e.get("job")
            self.log_lines = (self.log_lines + [f"{label}: {e.get('state')}"])[-3:]
            if e.get("state") == "finished" and e.get("eval"):
                self.last_finished = f"job:{e.get('job')}"
            elif e.get("state") != "finished":
                self.notify(
                    f"{label}: {e.get('state')}. {str(e.get('error') or '').splitlines()[0] if e.get('error') else ''}",
                    title="Evaluation ended",
                    severity="error",
                    markup=False,
                    timeout=10,
                )
        if ended:
            self.query_one("#eval-log", Static).update("\n".join(self.log_lines))
            self.reconcile()

    @on(JobFollower.Ended)
    def _run_ended(self, message: JobFollower.Ended) -> None:
        status = message.status
        if message.key != "run" or status.dir != self.run_job:
            return
        # A bar left without a total pulses forever (redrawing the terminal ~20 times a second).
        self.query_one("#eval-progress", ProgressBar).update(total=1, progress=1 if status.state == "finished" else 0)
        self.last_progress = (status.kind, status.done, status.total, status.message, status.state)
        show = self.last_finished
        if status.kind == "experiment" and status.state == "finished":
            try:
                show = f"exp:{jobs.read_spec(status.dir).get('experiment')}"
            except ValueError:
                show = ""
        self.fill_choices()
        self.refresh_history()
        if status.state != "finished":
            reason = (status.error or status.message or status.state).splitlines()[0]
            self._set_status(f"stopped: {status.state}: {reason}"[:200])
            if status.state != "cancelled":
                self.notify(reason, title=f"{status.id} {status.state}", severity="error", markup=False, timeout=12)
        else:
            self._set_status("done." + (" Results shown in the Results tab." if show else ""))
        if show:
            self.show(show)
        self.busy = False
        self.reconcile()

    # -- recording what finished (here, or while the app was closed) ------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-reconcile")
    def reconcile(self) -> None:
        """Find finished evaluations of queues and studies that the session does not hold yet."""
        from evaluators.evaluate.queue import result_entry, unrecorded_results
        from evaluators.evaluate.reader import load_scores
        from evaluators.experiments import format_comparison as fc
        from evaluators.experiments.state import RESULT_FILE, experiment_dir, read_json

        results = []
        for eval_id, job_dir in unrecorded_results(self.session, self.workspace):
            try:
                results.append((eval_id, result_entry(job_dir, load_scores(job_dir))))
            except ValueError:
                continue
        tables = []
        for status in jobs.list_jobs(self.workspace):
            if status.kind != "experiment" or status.state != "finished":
                continue
            try:
                exp_id = str(jobs.read_spec(status.dir).get("experiment") or "")
                result = read_json(experiment_dir(self.workspace, exp_id) / RESULT_FILE) if exp_id else None
            except ValueError:
                continue
            if result:
                tables.append((f"{exp_id}-traits", fc.session_summary(result)))
        if results or tables:
            self.post_message(self.Unrecorded(results, tables))

    def on_evaluate_pane_unrecorded(self, message: Unrecorded) -> None:
        recorded = {
            str(r.get("job")) for e in self.session.evals for r in (e.extra.get("results") or []) if isinstance(r, dict)
        }
        changed = []
        for eval_id, entry in message.results:
            spec = next((e for e in self.session.evals if e.id == eval_id), None)
            if spec is None or entry["job"] in recorded:
                continue
            spec.extra["results"] = [*(spec.extra.get("results") or []), entry]
            recorded.add(entry["job"])
            changed.append(eval_id)
        for eval_id, table in message.tables:
            spec = next((e for e in self.session.evals if e.id == eval_id), None)
            if spec is not None and spec.extra.get("experiment") != table:
                spec.extra["experiment"] = table
                changed.append(eval_id)
        if changed:
            self.post_message(SessionChanged(f"results of {', '.join(dict.fromkeys(changed))}", save_now=True))
            self.refresh_history()

    def _set_status(self, text: str) -> None:
        self.query_one("#eval-status", Static).update(text)

    # -- the format comparison ---------------------------------------------------------------
    def action_run_experiment(self) -> None:
        """The format comparison as one detached job (evaluators.experiments.job): its specs are
        added here and saved through the app; the study runs on if the app quits."""
        if self._refuse_if_busy():
            return
        persona = self._persona()
        text = self.query_one("#exp-size", Input).value.strip()
        try:
            size = int(text)
        except ValueError:
            size = 0
        if size < 2:
            self.notify(
                f"size {text!r} is not a number of examples (at least 2); type one beside the button.", severity="error"
            )
            return
        if not persona:
            self.notify("The session has no persona to study; add one in the Personas tab.", severity="error")
            return
        from evaluators.experiments.job import (
            create_experiment_job,
            prepare_format_comparison,
        )

        def save() -> None:
            if not self.app.save():
                raise ValueError(
                    f"{self.session_file.path} could not be saved, so the study did not start; see the notification."
                )

        try:
            cfg = prepare_format_comparison(self.session_file, persona, size, save)
            job_dir = create_experiment_job(self.session_file, cfg)
            jobs.start_job(job_dir)
        except (OSError, ValueError) as e:
            self.notify(
                str(e).splitlines()[0] if str(e) else type(e).__name__,
                title="Not started",
                severity="error",
                markup=False,
                timeout=12,
            )
            return
        self.post_message(SessionChanged(f"format comparison {cfg.id}"))
        self._follow_run(job_dir, f"format comparison of {persona}, {size} examples per format: job {job_dir.name}")
