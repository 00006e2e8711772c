"""Data pane: dataset specs of the session, their build jobs, and the examples they made.

The left list holds the session's dataset specs; the form edits the selected one in place (the
app saves, through `SessionChanged`). `b` builds it as a detached job (the same job the CLI's
`persona-tui data` runs) that freezes the spec as shown, saved or not; a `JobFollower` reads the
job's files off the UI thread into the progress bar, so a build started elsewhere, or before the
app was restarted, is followed the same way. Below: the
examples (open one to edit it as JSON, delete one), the statistics and a preview of the
selected example through the base model's chat template; `e` exports.
Work that touches files or loads a tokenizer runs in thread workers that only post messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
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

from persona_tui.messages import SessionChanged
from persona_tui.screens.choice import ChoiceScreen, confirm
from persona_tui.screens.example_editor import ExampleEditor
from persona_tui.screens.text_prompt import TextPrompt
from persona_tui.widgets.job_follower import JobFollower
from sessions import workspace as ws
from sessions.model import DatasetSpec

# The format names from their one place (trainers.data.formats imports no ML library: ~8 ms).
from trainers.data.formats import IMPORT_FORMATS, PERSONA_FORMATS

FORMAT_LABELS = {
    "chat_demos": "chat demos (persona speaks)",
    "first_person": "first-person statements",
    "synthetic_docs": "synthetic documents",
    "persona_chat": "Persona-Chat next turns (CSV)",
    "tailoring_sft": "persona tailoring, SFT",
    "tailoring_dpo": "persona tailoring, DPO",
}
EXPORT_FORMATS = ("openai", "sharegpt", "alpaca", "trl_preference", "hf")
# trainers.data.formats.tailoring.PERSONA_SOURCES, named for people.
PERSONA_SOURCE_LABELS = {
    "auto": "personas: gold, else retrieved",
    "gold": "gold personas",
    "retr": "retrieved personas",
    "infer": "inferred by the engine",
    "none": "no persona (baseline)",
}
MAX_ROWS = 2000  # rows shown in the examples table (big imports are paged by the file, not here)


def _excerpt(record: dict[str, Any], width: int = 90) -> str:
    if "messages" in record:
        msgs = record["messages"]
        user = next((m["content"] for m in msgs if m.get("role") == "user"), "")
        reply = next((m["content"] for m in msgs if m.get("role") == "assistant"), "")
        text = f"{user} → {reply}"
    elif "text" in record:
        text = str(record["text"])
    elif "completion" in record:
        comp = record["completion"]
        text = comp[0]["content"] if isinstance(comp, list) and comp else str(comp)
    elif "chosen" in record:
        text = str(record["chosen"])
    else:
        text = str(record)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_stats(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "Not built yet. Press b to build."
    nd = stats.get("near_duplicates") or {}
    tok = stats.get("tokens") or {}
    lines = [
        f"examples       {stats.get('count')} ({stats.get('train')} train, {stats.get('heldout')} held out)"
        f" of {stats.get('requested')} requested",
        f"generator      {stats.get('generator')}   format {stats.get('format')}   seed {stats.get('seed')}",
        f"duplicates     {stats.get('near_duplicates_removed')} near, {stats.get('exact_duplicates_removed')} exact removed",
        f"skipped        {stats.get('malformed')} malformed, {stats.get('skipped')} broken rows",
        f"near-dup pairs {nd.get('pairs', '-')} left (Jaccard >= {nd.get('threshold', 0.8)},"
        f" {nd.get('pair_fraction', 0):.3%} of pairs)",
        f"distinct-2     {stats.get('distinct_2')} (targets {stats.get('distinct_2_target')})",
    ]
    if "mean" in tok:
        lines.append(
            f"tokens         mean {tok['mean']}, median {tok['median']}, p95 {tok['p95']}, "
            f"max {tok['max']} under {tok['base_model']}"
        )
    elif tok.get("error"):
        lines.append(f"tokens         {tok['error']}")
    lines.append(f"speed          {stats.get('examples_per_s')} examples/s, {stats.get('seconds')} s")
    gen = stats.get("generation") or {}
    if gen.get("teacher"):
        lines.append(
            f"teacher        {gen['teacher']}: {gen.get('teacher_calls')} calls, "
            f"{gen.get('teacher_tokens_per_s')} tokens/s"
        )
    broken = gen.get("broken") or []
    if broken:
        shown = ", ".join(f"line {b['line']}" for b in broken[:8])
        lines.append(f"broken rows    {shown}{' …' if len(broken) > 8 else ''}")
    counts = {k: v for k, v in gen.items() if isinstance(v, int) and k not in ("attempts",)}
    if counts:
        lines.append("counts         " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if stats.get("trait_coverage"):
        lines.append("traits         " + ", ".join(f"{k} {v}" for k, v in stats["trait_coverage"].items()))
    if stats.get("shortfall"):
        lines.append(f"note           {stats['shortfall']}")
    return "\n".join(lines)


class DatasetList(ListView):
    """The session's dataset specs."""


class ExampleTable(DataTable):
    """The built examples; enter opens one, del deletes it."""

    BINDINGS = [
        Binding("enter", "open_example", "Open"),
        Binding("delete,x", "delete_example", "Delete", key_display="del"),
    ]

    def action_open_example(self) -> None:
        self.post_message(DataPane.ExampleAction("open"))

    def action_delete_example(self) -> None:
        self.post_message(DataPane.ExampleAction("delete"))


class DataPane(Widget):
    BINDINGS = [
        Binding("n", "new_dataset", "New"),
        Binding("m", "mix", "Mix"),
        Binding("b", "build", "Build"),
        Binding("c", "cancel_build", "Cancel build", show=False),
        Binding("e", "export", "Export"),
        Binding("p", "preview", "Preview"),
    ]

    # Set by the app before mounting.
    session_file = None

    class ExampleAction(Message):
        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    class ExamplesLoaded(Message):
        """A worker read a dataset's files."""

        def __init__(
            self, dataset_id: str, rows: list[tuple[str, int, dict[str, Any]]], total: int, stats: dict[str, Any] | None
        ) -> None:
            super().__init__()
            self.dataset_id = dataset_id
            self.rows = rows
            self.total = total
            self.stats = stats

    class PreviewReady(Message):
        def __init__(self, dataset_id: str, text: str) -> None:
            super().__init__()
            self.dataset_id = dataset_id
            self.text = text

    class BuildStarted(Message):
        """A build job was started for a dataset (its directory is `job_dir`)."""

        def __init__(self, dataset_id: str, job_dir: Path) -> None:
            super().__init__()
            self.dataset_id = dataset_id
            self.job_dir = job_dir

    class BuildEnded(Message):
        def __init__(self, dataset_id: str, state: str, error: str) -> None:
            super().__init__()
            self.dataset_id = dataset_id
            self.state = state
            self.error = error

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.current: int | None = None
        self.rows: list[tuple[str, int, dict[str, Any]]] = []
        self.job_dir: Path | None = None
        self.job_dataset: str | None = None
        self.job_state_terminal = True

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="data-body"):
            with Vertical(id="data-side"):
                yield Label("Datasets (n: new)", classes="side-title")
                yield DatasetList(id="dataset-list")
            with Vertical(id="data-main"):
                with Horizontal(classes="data-row"):
                    yield Select(
                        [(FORMAT_LABELS[f], f) for f in (*PERSONA_FORMATS, *IMPORT_FORMATS)],
                        id="data-format",
                        allow_blank=False,
                        compact=True,
                    )
                    yield Select([], id="data-persona", prompt="persona", compact=True)
                    yield Select(
                        [("template", "template"), ("llm (teacher)", "llm")],
                        id="data-generator",
                        allow_blank=False,
                        compact=True,
                    )
                with Horizontal(classes="data-row"):
                    yield Label("size", classes="inline-label")
                    yield Input(id="data-size", compact=True, type="integer")
                    yield Label("held out", classes="inline-label")
                    yield Input(id="data-heldout", compact=True, type="number")
                    yield Select([], id="data-engine", prompt="engine", compact=True)
                with Horizontal(classes="data-row", id="data-options-row"):
                    yield Checkbox("persona in system prompt", id="data-system", compact=True)
                    yield Input(id="data-source", compact=True, placeholder="source file (CSV or JSONL)")
                    yield Select(
                        [("own persona", "own"), ("both personas", "both"), ("own + first N lines", "context")],
                        id="data-variant",
                        allow_blank=False,
                        compact=True,
                    )
                    yield Input(
                        id="data-context",
                        compact=True,
                        type="integer",
                        placeholder="N",
                        tooltip="context variant: how many first lines of the conversation the prompt keeps",
                    )
                    yield Select(
                        [(label, value) for value, label in PERSONA_SOURCE_LABELS.items()],
                        id="data-persona-source",
                        allow_blank=False,
                        compact=True,
                        tooltip="tailoring: which personas go in the Persona: line",
                    )
                with Horizontal(classes="data-row", id="data-job-row"):
                    yield ProgressBar(id="data-progress", total=1, show_eta=False)  # idle: still, not pulsing
                    yield Static("", id="data-job-state", markup=False)
                with TabbedContent(id="data-tabs"):
                    with TabPane("Examples", id="data-examples-tab"):
                        yield ExampleTable(id="example-table", cursor_type="row", zebra_stripes=True)
                    with TabPane("Statistics", id="data-stats-tab"):
                        with VerticalScroll():
                            yield Static("", id="data-stats", markup=False)
                    with TabPane("Preview", id="data-preview-tab"):
                        with VerticalScroll():
                            yield Static("Select an example and press p.", id="data-preview", markup=False)
            yield Static(
                "No dataset specs yet.\n\nPress n to add one: pick a persona, a format and a size, then b builds it.",
                id="data-empty",
                markup=False,
            )
        yield JobFollower()

    async def on_mount(self) -> None:
        self.query_one(ExampleTable).add_columns("#", "split", "traits", "example")
        await self.refresh_list(select=0)

    # -- helpers ------------------------------------------------------------------------
    @property
    def session(self):
        return self.session_file.session

    @property
    def workspace(self) -> Path:
        return self.session_file.workspace

    @property
    def spec(self) -> DatasetSpec | None:
        if self.current is None or not (0 <= self.current < len(self.session.datasets)):
            return None
        return self.session.datasets[self.current]

    def changed(self, what: str) -> None:
        self.post_message(SessionChanged(what))

    def _built_count(self, spec: DatasetSpec) -> str:
        from trainers.data import reader as data_reader  # light: no ML imports

        st = data_reader.read_stats(self.workspace, spec.id)
        return f"{st['count']}" if st else "–"

    async def reread_session(self) -> None:
        """Another pane changed the session's datasets: list them again."""
        await self.refresh_list()

    async def refresh_list(self, select: int | None = None) -> None:
        datasets = self.session.datasets
        lv = self.query_one(DatasetList)
        if select is None:
            select = self.current if self.current is not None else 0
        await lv.clear()
        await lv.extend(ListItem(Label(f"{d.id} · {self._built_count(d)}", markup=False)) for d in datasets)
        self.current = min(select, len(datasets) - 1) if datasets else None
        lv.index = self.current
        self.show_spec()

    def show_spec(self) -> None:
        spec = self.spec
        self.query_one("#data-main").display = spec is not None
        self.query_one("#data-empty").display = spec is None
        if spec is None:
            return
        # Filling the form is not an edit: its Changed messages are not posted at all.
        with self.prevent(Select.Changed, Input.Changed, Checkbox.Changed):
            personas = [(p.name or p.id, p.id) for p in self.session.personas]
            persona_select = self.query_one("#data-persona", Select)
            persona_select.set_options(personas)
            persona_select.value = spec.persona if spec.persona in {p for _, p in personas} else Select.NULL
            engines = [("first engine / bundled model", "")] + [
                (f"{e.id} ({e.kind})", e.id) for e in self.session.engines
            ]
            engine_select = self.query_one("#data-engine", Select)
            engine_select.set_options(engines)
            engine_select.value = spec.engine if spec.engine in {e for _, e in engines} else ""
            self.query_one("#data-format", Select).value = spec.format if spec.format in FORMAT_LABELS else "chat_demos"
            if spec.generator in ("template", "llm"):
                self.query_one("#data-generator", Select).value = spec.generator
            self.query_one("#data-size", Input).value = str(spec.size)
            self.query_one("#data-heldout", Input).value = str(spec.held_out)
            self.query_one("#data-system", Checkbox).value = spec.persona_in_system_prompt
            self.query_one("#data-source", Input).value = spec.source
            self.query_one("#data-variant", Select).value = (
                spec.variant if spec.variant in ("own", "both", "context") else "own"
            )
            self.query_one("#data-context", Input).value = str(spec.context_lines or 3)
            source = spec.extra.get("persona_source", "auto")
            self.query_one("#data-persona-source", Select).value = source if source in PERSONA_SOURCE_LABELS else "auto"
        self._show_fields_for(spec.format)
        self.load_examples(spec.id)
        self._follow_running_job(spec.id)

    def _show_fields_for(self, fmt: str) -> None:
        persona_fmt = fmt in PERSONA_FORMATS
        for wid in ("#data-persona", "#data-generator"):
            self.query_one(wid).display = persona_fmt
        self.query_one("#data-system").display = fmt == "chat_demos"
        self.query_one("#data-source").display = not persona_fmt
        self.query_one("#data-variant").display = fmt == "persona_chat"
        spec = self.spec
        self.query_one("#data-context").display = (
            fmt == "persona_chat" and spec is not None and spec.variant == "context"
        )
        self.query_one("#data-persona-source").display = fmt in ("tailoring_sft", "tailoring_dpo")
        self.query_one("#data-options-row").display = fmt == "chat_demos" or not persona_fmt

    # -- editing the spec -----------------------------------------------------------------
    @on(DatasetList.Highlighted)
    def _picked(self, event: ListView.Highlighted) -> None:
        index = event.list_view.index
        if index is not None and index != self.current:
            self.current = index
            self.show_spec()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        spec = self.spec
        if spec is None or event.value != event.select.value:
            # Outdated: a Select announces its first option when it mounts, and that message
            # arrives after show_spec set the spec's value (an llm spec read as "template").
            return
        value = event.value if event.value is not Select.NULL else ""
        if event.select.id == "data-persona-source":
            if spec.extra.get("persona_source", "auto") != value:
                spec.extra["persona_source"] = value
                self.changed(f"dataset {spec.id}: persona_source")
            return
        field = {
            "data-format": "format",
            "data-persona": "persona",
            "data-generator": "generator",
            "data-engine": "engine",
            "data-variant": "variant",
        }.get(event.select.id or "")
        if field is None or getattr(spec, field) == value:
            return
        if field == "variant" and (spec.format != "persona_chat" or (spec.variant or "own") == value):
            # Only persona_chat has a variant, and "" means "own": the Select's first value, which
            # it announces when it mounts, is not an edit.
            return
        setattr(spec, field, value)
        if field == "variant":
            self._show_fields_for(spec.format)
        if field == "format":
            if value in IMPORT_FORMATS:
                spec.generator = "import"
            elif spec.generator == "import":
                spec.generator = "template"
            self._show_fields_for(str(value))
        self.changed(f"dataset {spec.id}: {field}")

    def flush_edit(self, widget: Widget) -> None:
        """Apply the focused field's text now (the app calls this before quitting)."""
        if isinstance(widget, Input):
            self._input_changed(Input.Changed(widget, widget.value))

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        spec = self.spec
        if spec is None:
            return
        text = event.value.strip()
        if event.input.id == "data-source":
            if spec.source != text:
                spec.source = text
                self.changed(f"dataset {spec.id}: source")
            return
        try:
            if event.input.id == "data-size":
                value: Any = int(text)
                ok = value >= 0
                field = "size"
            elif event.input.id == "data-heldout":
                value = float(text)
                ok = 0 <= value < 1
                field = "held_out"
            elif event.input.id == "data-context":
                value = int(text)
                ok = value >= 1
                field = "context_lines"
            else:
                return
        except ValueError:
            ok = False
        event.input.set_class(not ok, "-invalid")
        if ok and getattr(spec, field) != value:
            setattr(spec, field, value)
            self.changed(f"dataset {spec.id}: {field}")

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        spec = self.spec
        if spec is None or spec.persona_in_system_prompt == event.value:
            return
        spec.persona_in_system_prompt = event.value
        self.changed(f"dataset {spec.id}: persona_in_system_prompt")

    def action_new_dataset(self) -> None:
        taken = {d.id for d in self.session.datasets}

        def check(value: str) -> str | None:
            if value in taken:
                return f"Another dataset already has the id '{value}': choose another."
            problem = ws.id_problem(value)
            if problem:
                return f"The id {value!r} {problem}; ids become file names, so {ws.ID_RULE}."
            if value.endswith(".heldout"):
                return "An id ending in '.heldout' names another dataset's held-out file; choose another."
            return None

        persona = self.session.personas[0].id if self.session.personas else ""
        suggestion = ws.make_id(f"{persona or 'data'} chat", taken, fallback="dataset")

        async def created(value: str | None) -> None:
            if not value:
                return
            self.session.datasets.append(DatasetSpec(id=value, format="chat_demos", persona=persona, size=100))
            self.changed(f"added dataset {value}")
            await self.refresh_list(select=len(self.session.datasets) - 1)

        self.app.push_screen(
            TextPrompt(
                "New dataset",
                value=suggestion,
                help="The id names its files: datasets/<id>.jsonl.",
                ok_label="Add",
                check=check,
            ),
            created,
        )

    def action_mix(self) -> None:
        """A new spec mixing built datasets of one record shape (b then builds it)."""
        from trainers.data.build import mix_spec

        ids = [d.id for d in self.session.datasets]
        current = self.spec
        others = [i for i in ids if not current or i != current.id]
        suggestion = ", ".join(([current.id] if current else []) + others[:1])

        def parts_and_id(value: str) -> tuple[list[str], str]:
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return parts, ws.make_id("-plus-".join(parts), ids, fallback="mix")

        def check(value: str) -> str | None:
            parts, new_id = parts_and_id(value)
            try:
                mix_spec(self.session, new_id, parts, self.workspace)
            except ValueError as e:
                return str(e)
            return None

        async def chosen(value: str | None) -> None:
            if not value:
                return
            parts, new_id = parts_and_id(value)
            spec = mix_spec(self.session, new_id, parts, self.workspace)
            self.session.datasets.append(spec)
            self.changed(f"added dataset {new_id} (a mix of {', '.join(spec.mix)})")
            await self.refresh_list(select=len(self.session.datasets) - 1)
            self.notify(f"Added {new_id}: a mix of {', '.join(spec.mix)}. Press b to build it.", markup=False)

        self.app.push_screen(
            TextPrompt(
                "Mix datasets into a new one",
                value=suggestion,
                help="Dataset ids, comma-separated (" + ", ".join(ids) + "). Train splits are "
                "pooled with train splits, held-out with held-out; the parts must be built and "
                "of one record shape (conversations with conversations, text with text).",
                ok_label="Add mix",
                check=check,
            ),
            chosen,
        )

    # -- building -----------------------------------------------------------------------
    def action_build(self) -> None:
        spec = self.spec
        if spec is None:
            return
        from trainers.data.build import check_spec

        try:
            check_spec(self.session, spec, self.workspace)
        except ValueError as e:
            self.notify(str(e), title="Cannot build", severity="error", timeout=8, markup=False)
            return
        if self.job_dir is not None and self.job_dataset == spec.id and not self.job_state_terminal:
            self.notify(f"{spec.id} is already building (c cancels).", markup=False)
            return
        from supervisor import jobs
        from trainers.data.job import job_spec

        # The job freezes the spec as it is here, saved or not: nothing to save and wait for.
        try:
            job_dir = jobs.create_job(self.workspace, "dataset", job_spec(self.session_file, spec.id))
            jobs.start_job(job_dir)
        except (OSError, ValueError) as e:
            self.notify(str(e), title="Not built", severity="error", markup=False)
            return
        self.post_message(self.BuildStarted(spec.id, job_dir))
        self._watch_job(spec.id, job_dir)

    def _follow_running_job(self, dataset_id: str) -> None:
        """Follow a build of this dataset that is still running (started by the CLI or earlier);
        the follower finds it off the UI thread and posts `Found`."""
        if self.job_dataset == dataset_id and self.job_dir is not None:
            return  # followed already
        self.job_dir = None
        self.job_dataset = None
        self.job_state_terminal = True
        self.query_one(JobFollower).follow_latest(
            self.workspace,
            "dataset",
            lambda status, spec: spec.get("dataset") == dataset_id,
            key="build",
            only_running=True,
        )

    def _watch_job(self, dataset_id: str, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.job_dataset = dataset_id
        self.job_state_terminal = False
        self.query_one(JobFollower).follow(job_dir, key="build")

    @on(JobFollower.Found)
    def _build_found(self, message: JobFollower.Found) -> None:
        spec, status = self.spec, message.status
        if spec is None or self.job_dir is not None or (status is not None and message.spec.get("dataset") != spec.id):
            return  # a build is followed already, or this answers a search for another dataset
        if status is not None and not status.terminal:
            self.job_dir, self.job_dataset, self.job_state_terminal = status.dir, spec.id, False
            return
        self.query_one("#data-progress", ProgressBar).update(total=100, progress=0)
        if status is not None:
            self.query_one("#data-job-state", Static).update(f"last build {status.state}")

    @on(JobFollower.Progress)
    def _build_progress(self, message: JobFollower.Progress) -> None:
        status = message.status
        if self.job_dir is None or status.dir != self.job_dir.resolve():
            return
        if self.spec is not None and self.spec.id == self.job_dataset:
            bar = self.query_one("#data-progress", ProgressBar)
            bar.update(total=status.total or None, progress=status.done)
            note = status.message if status.state == "running" else status.state
            self.query_one("#data-job-state", Static).update(f"{status.state}: {note}"[:60])

    @on(JobFollower.Ended)
    def _build_job_ended(self, message: JobFollower.Ended) -> None:
        status = message.status
        if self.job_dir is None or status.dir != self.job_dir.resolve():
            return
        # Report the end once: forget the job, so showing the spec again does not re-announce it.
        dataset_id = self.job_dataset or ""
        self.job_dir = None
        self.job_dataset = None
        self.job_state_terminal = True
        self.post_message(self.BuildEnded(dataset_id, status.state, status.error))

    @on(BuildEnded)
    async def _build_ended(self, message: BuildEnded) -> None:
        if message.state == "finished":
            self.notify(f"Built {message.dataset_id}.", title="Dataset built", markup=False)
        elif message.state in ("failed", "died"):
            self.notify(
                message.error.splitlines()[0] if message.error else message.state,
                title=f"Build of {message.dataset_id} {message.state}",
                severity="error",
                timeout=10,
                markup=False,
            )
        else:
            self.notify(f"Build of {message.dataset_id} {message.state}.", markup=False)
        await self.refresh_list()

    def action_cancel_build(self) -> None:
        from supervisor import jobs

        if self.job_dir is None:
            return
        if jobs.cancel_job(self.job_dir):
            self.notify("Cancel requested.", markup=False)

    # -- examples -----------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="data-load")
    def load_examples(self, dataset_id: str) -> None:
        from trainers.data import reader as data_reader

        rows: list[tuple[str, int, dict[str, Any]]] = []
        total = 0
        stats = None
        if data_reader.is_built(self.workspace, dataset_id):
            try:
                for split in data_reader.SPLITS:
                    records = data_reader.load_records(self.workspace, dataset_id, split)
                    total += len(records)
                    rows += [(split, i, r) for i, r in enumerate(records)][: max(0, MAX_ROWS - len(rows))]
            except ValueError:
                rows = []
            stats = data_reader.read_stats(self.workspace, dataset_id)
        self.post_message(self.ExamplesLoaded(dataset_id, rows, total, stats))

    @on(ExamplesLoaded)
    def _examples_loaded(self, message: ExamplesLoaded) -> None:
        if self.spec is None or self.spec.id != message.dataset_id:
            return
        self.rows = message.rows
        table = self.query_one(ExampleTable)
        table.clear()
        for split, i, record in message.rows:
            meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
            traits = ",".join(meta.get("traits", []) or [])
            table.add_row(str(i), split, traits[:14], _excerpt(record), key=f"{split}:{i}")
        shown = f" (showing {len(message.rows)} of {message.total})" if message.total > len(message.rows) else ""
        self.query_one("#data-stats", Static).update(format_stats(message.stats) + shown)
        if self.job_dir is None:
            self.query_one("#data-progress", ProgressBar).update(total=1, progress=1 if message.total else 0)
            self.query_one("#data-job-state", Static).update(
                f"{message.total} examples{shown}" if message.total else "not built"
            )

    def _selected(self) -> tuple[str, int, dict[str, Any]] | None:
        table = self.query_one(ExampleTable)
        if not self.rows or table.cursor_row is None or not (0 <= table.cursor_row < len(self.rows)):
            return None
        return self.rows[table.cursor_row]

    @on(ExampleAction)
    def _example_action(self, message: ExampleAction) -> None:
        spec, selected = self.spec, self._selected()
        if spec is None or selected is None:
            return
        split, index, record = selected
        if message.action == "open":

            def saved(new: dict[str, Any] | None) -> None:
                if new is None or new == record:
                    return
                from trainers.data import reader as data_reader

                try:
                    data_reader.replace_record(self.workspace, spec.id, index, new, spec.format, split)
                except ValueError as e:
                    self.notify(str(e), severity="error", markup=False)
                    return
                self.notify(f"Saved example {index} of {spec.id} ({split}).", markup=False)
                self.load_examples(spec.id)

            self.app.push_screen(ExampleEditor(record, spec.format, f"{spec.id} · {split} example {index}"), saved)
        elif message.action == "delete":

            def decided(choice: str) -> None:
                if choice != "yes":
                    return
                from trainers.data import reader as data_reader

                try:
                    data_reader.delete_record(self.workspace, spec.id, index, split)
                except ValueError as e:
                    self.notify(str(e), severity="error", markup=False)
                    return
                self.notify(f"Deleted example {index} of {spec.id} ({split}).", markup=False)
                self.load_examples(spec.id)

            self.app.push_screen(
                confirm(
                    "Delete example",
                    f"Delete {split} example {index} of {spec.id}? "
                    "The statistics are not recomputed until the next build.",
                    yes="Delete",
                ),
                decided,
            )

    @on(DataTable.RowSelected, "#example-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.ExampleAction("open"))

    # -- preview and export ---------------------------------------------------------------
    def action_preview(self) -> None:
        spec, selected = self.spec, self._selected()
        if spec is None or selected is None:
            self.notify("Build the dataset and select an example first.", markup=False)
            return
        self.query_one("#data-tabs", TabbedContent).active = "data-preview-tab"
        preview = self.query_one("#data-preview", Static)
        preview.update("Rendering through the chat template…")
        # Keep focus in the pane (the table just got hidden): on the preview, which scrolls.
        if preview.parent is not None:
            preview.parent.focus()
        from trainers.data.build import base_model_for

        self.render_preview(spec.id, selected[2], base_model_for(self.session, spec))

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-preview")
    def render_preview(self, dataset_id: str, record: dict[str, Any], base_model: str) -> None:
        from trainers.data.build import preview

        try:
            text = f"{base_model} chat template:\n\n" + preview(record, base_model)
        except Exception as e:  # noqa: BLE001 - shown to the person, never a crash
            text = f"No preview: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        self.post_message(self.PreviewReady(dataset_id, text))

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        if self.spec is not None and self.spec.id == message.dataset_id:
            self.query_one("#data-preview", Static).update(message.text)

    def action_export(self) -> None:
        spec = self.spec
        if spec is None or not self.rows:
            self.notify("Build the dataset first.", markup=False)
            return

        def chosen(fmt: str) -> None:
            if fmt in EXPORT_FORMATS:
                self.export(spec.id, fmt)

        labels = {
            "openai": "OpenAI",
            "sharegpt": "ShareGPT",
            "alpaca": "Alpaca",
            "trl_preference": "TRL pref",
            "hf": "HF datasets",
        }
        choices = [(f, labels[f], "primary" if f == "hf" else "default") for f in EXPORT_FORMATS]
        hotkeys = {"o": "openai", "s": "sharegpt", "a": "alpaca", "t": "trl_preference", "h": "hf"}
        self.app.push_screen(
            ChoiceScreen(
                "Export dataset",
                f"Export {spec.id} (train and held-out splits) to exports/datasets/ as (escape cancels):",
                choices,
                hotkeys=hotkeys,
            ),
            chosen,
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-export")
    def export(self, dataset_id: str, fmt: str) -> None:
        from trainers.data.export import export_dataset

        try:
            out = export_dataset(self.workspace, dataset_id, fmt)
        except ValueError as e:
            self.app.call_from_thread(self.notify, str(e), title="Not exported", severity="error", markup=False)
            return
        self.app.call_from_thread(
            self.notify, f"Exported {dataset_id} as {fmt} to {out}", title="Exported", markup=False
        )
