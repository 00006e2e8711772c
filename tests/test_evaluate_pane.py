"""The Evaluate pane with Pilot at 80x24: earlier results (a finished eval job's scores.json, a
summary kept in the session, an experiment's result.json) are listed and shown as tables and
bar charts; `r` starts real eval jobs under a queue job (detached workers) and the pane follows them
to their table; quitting mid-queue stops nothing, and the reopened pane records what finished; the
format study is one job too, followed again after a restart and cancelled from the pane."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, SelectionList

from evaluators.evaluate.presets import new_eval_spec
from evaluators.probes import Rate
from evaluators.results import list_results
from experiment_fixtures import tiny_session
from persona_tui.app import make_app
from persona_tui.panes.evaluate import EvaluatePane
from sessions.model import DatasetSpec, EngineSpec, EvalSpec
from sessions.store import SessionFile
from supervisor import jobs
from waiting import wait_until

pytestmark = pytest.mark.anyio


def shown_text(pane: EvaluatePane) -> str:
    """The Results tab's tables as plain text (whitespace collapsed: titles wrap in narrow tables)."""
    from rich.console import Console

    console = Console(width=78, record=True, file=io.StringIO())
    console.print(pane.query_one("#result-tables").content)
    return " ".join(console.export_text().split())


def _trait_row(model: str, trait: str, know: tuple[int, int], show: tuple[int, int], flag: str) -> dict:
    return {
        "model": model,
        "trait": trait,
        "knowledge": Rate(*know).to_dict(),
        "expression": Rate(*show).to_dict(),
        "contradicted": Rate(0, show[1]).to_dict(),
        "unscored": 0,
        "scorers": ["markers"],
        "flag": flag,
    }


TRAITS_SCORES = {
    "eval": "odile-traits",
    "kind": "traits",
    "models": ["base", "tuned"],
    "persona": "odile",
    "traits": ["draws-maps", "cannot-swim"],
    "labeller": "markers",
    "knowledge_by": "total",
    "partial": False,
    "problems": [],
    "notes": [],
    "rows": [
        _trait_row("base", "draws-maps", (1, 4), (0, 6), "below both bars"),
        _trait_row("base", "cannot-swim", (1, 3), (1, 5), "below both bars"),
        _trait_row("tuned", "draws-maps", (4, 4), (2, 6), "KNOWS, RARELY SHOWS"),
        _trait_row("tuned", "cannot-swim", (3, 3), (4, 5), "ok"),
    ],
}


def _finished_eval(sf: SessionFile) -> Path:
    """An eval job made through the job protocol whose work writes the scores a traits eval writes."""
    job_dir = jobs.create_job(
        sf.workspace, "eval", {"eval": "odile-traits", "eval_kind": "traits"}, worker="evaluators.worker"
    )

    def work(job):
        (job.dir / "scores.json").write_text(json.dumps({**TRAITS_SCORES, "job": job.dir.name}))
        (job.dir / "outputs.jsonl").write_text("")

    assert jobs.run_job_inline(job_dir, {"eval": work}).state == "finished"
    return job_dir


def _session_with_history(tmp_path: Path) -> tuple[SessionFile, Path]:
    sf = tiny_session(tmp_path)
    job_dir = _finished_eval(sf)
    sf.session.evals.append(
        EvalSpec(
            id="odile-traits",
            kind="traits",
            models=["base", "tuned"],
            extra={
                "results": [
                    {"job": job_dir.name, "finished": "2026-11-20T10:00:00", "partial": False, "summary": {}},
                    {
                        "job": "eval-gone",
                        "finished": "2026-11-19T09:00:00",
                        "partial": True,
                        "summary": {"base": {"draws-maps": {"knowledge": 0.25}}},
                    },
                ]
            },
        )
    )
    sf.save()
    return SessionFile.load(sf.path), job_dir


def test_history_lists_jobs_summaries_and_experiments(tmp_path):
    sf, job_dir = _session_with_history(tmp_path)
    exp = sf.workspace / "experiments" / "odile-fc"
    exp.mkdir(parents=True)
    (exp / "result.json").write_text(json.dumps({"study": "format-comparison", "finished": "2026-11-21T08:00:00"}))
    entries = list_results(sf.session, sf.workspace)
    keys = [e.key for e in entries]
    assert f"job:{job_dir.name}" in keys and "exp:odile-fc" in keys and "spec:odile-traits:1" in keys
    assert "spec:odile-traits:0" not in keys  # its job is listed itself
    job_entry = entries[keys.index(f"job:{job_dir.name}")]
    assert job_entry.title == "odile-traits" and job_entry.kind == "traits" and job_entry.state == "finished"
    assert entries[keys.index("spec:odile-traits:1")].state == "summary (partial)"


def test_new_eval_specs_say_what_is_missing(tmp_path):
    sf = tiny_session(tmp_path)
    with pytest.raises(ValueError, match="select at least two"):
        new_eval_spec("judge", ["base"], sf.session, sf.workspace, "odile")
    with pytest.raises(ValueError, match="no dataset has held-out examples yet"):
        new_eval_spec("perplexity_matrix", ["base"], sf.session, sf.workspace, "odile")
    with pytest.raises(ValueError, match="no model is selected"):
        new_eval_spec("traits", [], sf.session, sf.workspace, "odile")
    spec = new_eval_spec("judge-fallback", ["base", "job:x"], sf.session, sf.workspace, "odile")
    assert spec.kind == "judge" and spec.extra["judge"] == "fallback" and spec.id == "eval-judge-fallback"


async def test_a_finished_eval_shows_as_tables_and_per_trait_bars(tmp_path):
    sf, job_dir = _session_with_history(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        pane.query_one("#eval-tabs").active = "eval-history"
        await pilot.pause()
        table = pane.query_one("#history-table", DataTable)
        assert table.row_count == 2
        table.focus()
        row = [e.key for e in pane.entries].index(f"job:{job_dir.name}")
        table.move_cursor(row=row)
        await pilot.press("enter")
        await pilot.pause()
        assert pane.query_one("#eval-tabs").active == "eval-results"
        assert pane.shown.key == f"job:{job_dir.name}"
        shown = shown_text(pane)
        assert "Knows vs shows · tuned" in shown and "KNOWS, RARELY" in shown and "4/4" in shown
        chart = pane.query_one("#result-chart")
        assert chart.display
        assert pane.chart_title.startswith("base: knows vs shows per trait")
        await pilot.press("m")
        assert pane.chart_title.startswith("tuned: knows vs shows per trait")
        # The summary whose job folder is gone still shows, from the session.
        pane.show("spec:odile-traits:1")
        await pilot.pause()
        assert "summary kept in the session" in shown_text(pane)
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_format_study_refuses_a_size_that_is_not_one(tmp_path):
    sf = tiny_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        pane.query_one("#exp-size").value = "1"
        pane.action_run_experiment()
        await pilot.pause()
        assert not pane.busy
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "at least 2" in errors[0].message
        assert not (sf.workspace / "experiments").exists()


@pytest.mark.slow
async def test_r_starts_a_real_eval_job_and_shows_its_table(tmp_path):
    sf = tiny_session(tmp_path)
    # One llama.cpp thread: a thread per core slows many times when other processes share the CPU.
    sf.session.engines = [EngineSpec(id="bundled", kind="llamacpp", threads=1)]
    sf.session.datasets.append(DatasetSpec(id="notes", format="first_person", persona="odile", size=2))
    held = sf.workspace / "datasets" / "notes.heldout.jsonl"
    held.parent.mkdir(parents=True)
    held.write_text(
        json.dumps({"text": "I keep three hives on my roof."})
        + "\n"
        + json.dumps({"text": "Tea, never coffee, at sunrise."})
        + "\n"
    )
    (sf.workspace / "datasets" / "notes.jsonl").write_text(json.dumps({"text": "I draw maps."}) + "\n")
    sf.save()
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        models = pane.query_one("#eval-models", SelectionList)
        models.deselect_all()
        models.select("bundled")
        kinds = pane.query_one("#eval-kinds", SelectionList)
        kinds.deselect_all()
        kinds.select("perplexity_matrix")
        models.focus()
        await pilot.press("r")
        await wait_until(pilot, lambda: pane.busy, timeout=10, what="the job to start")
        await wait_until(pilot, lambda: not pane.busy, timeout=400, what="the eval job to end")
        assert not [n for n in app._notifications if n.severity == "error"]
        assert pane.shown is not None and pane.shown.kind == "perplexity_matrix"
        assert pane.query_one("#eval-tabs").active == "eval-results"
        assert "Cross-format perplexity" in shown_text(pane)
        values = pane.shown_data["rows"][0]["values"]
        assert values["notes"] > 1.0
        assert pane.last_progress[4] == "finished"
        await wait_until(
            pilot,
            lambda: "[[evals.results]]" in sf.path.read_text(),
            timeout=20,
            what="the results saved in the session file",
        )
        await pilot.pause()
    spec = next(e for e in SessionFile.load(sf.path).session.evals if e.kind == "perplexity_matrix")
    assert spec.models == ["bundled"] and spec.extra["data"] == ["notes"]
    (result,) = spec.extra["results"]
    assert jobs.read_status(sf.workspace / "jobs" / result["job"]).state == "finished"
    assert result["summary"]["bundled"]["notes"] == pytest.approx(values["notes"], rel=1e-3)


def _endpoint_session(tmp_path: Path, url: str) -> SessionFile:
    """Two models and a judge behind one local OpenAI-compatible endpoint (real HTTP)."""
    sf = tiny_session(tmp_path)
    sf.session.engines = [EngineSpec(id=e, kind="openai", base_url=url, model="teacher-1") for e in ("a", "b")]
    sf.save()
    return SessionFile.load(sf.path)


def _queue_dir(workspace: Path) -> Path | None:
    queues = [s for s in jobs.list_jobs(workspace) if s.kind == "eval_queue"]
    return queues[-1].dir if queues else None


@pytest.mark.slow
async def test_quit_mid_queue_the_queue_goes_on_and_the_reopened_pane_records_it(tmp_path):
    """r queues two evaluations as one detached queue job; quitting while the first runs stops
    nothing: the last one finishes without the app, and the reopened pane records both."""
    from evaluators.evaluate.queue import children_of
    from fake_openai_server import FakeOpenAI

    with FakeOpenAI(latency=0.3) as server:
        sf = _endpoint_session(tmp_path, server.url)
        app = make_app(SessionFile.load(sf.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("5")
            pane = app.query_one(EvaluatePane)
            models = pane.query_one("#eval-models", SelectionList)
            models.deselect_all()
            models.select("a")
            models.select("b")
            kinds = pane.query_one("#eval-kinds", SelectionList)
            kinds.deselect_all()
            kinds.select("judge")
            kinds.select("judge-fallback")
            models.focus()
            await pilot.press("r")
            await wait_until(
                pilot, lambda: pane.busy and _queue_dir(sf.workspace) is not None, timeout=10, what="the queue to start"
            )
            queue = _queue_dir(sf.workspace)
            first, last = [jobs.jobs_root(sf.workspace) / c["job"] for c in children_of(queue)]
            await wait_until(
                pilot,
                lambda: pane.last_progress and "eval-judge (1/2): running" in pane.last_progress[3],
                timeout=120,
                what="the first evaluation running, shown in the pane",
            )
            assert pane.last_progress[4] == "running"
            assert jobs.read_status(last).state == "queued"  # the first takes seconds: the last waits
            await pilot.press("q")
        assert not app.is_running
        quit_at = time.time()
        # The app is gone: the queue goes on and starts the last evaluation itself.
        with_app_closed = len(server.requests)
        status = await _wait_job(last, 300)
        assert status.state == "finished", status.error + jobs.log_tail(last)
        assert status.started > quit_at  # started by the queue, with no app
        assert jobs.read_status(first).state == "finished"
        assert (await _wait_job(queue, 60)).state == "finished"
        assert len(server.requests) > with_app_closed
        events, _ = jobs.read_events(queue)
        assert [(e["eval"], e["state"]) for e in events if e.get("event") == "child_ended"] == [
            ("eval-judge", "finished"),
            ("eval-judge-fallback", "finished"),
        ]
        assert "[[evals.results]]" not in sf.path.read_text()  # nobody had the session open

        # Reopened, the pane records the summaries of both and shows them in its history.
        app = make_app(SessionFile.load(sf.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("5")
            pane = app.query_one(EvaluatePane)
            await wait_until(
                pilot,
                lambda: sf.path.read_text().count("[[evals.results]]") == 2,
                timeout=30,
                what="the results recorded in the session file",
            )
            assert not pane.busy
            keys = [e.key for e in pane.entries]
            assert f"job:{first.name}" in keys and f"job:{last.name}" in keys
    saved = {e.id: e for e in SessionFile.load(sf.path).session.evals}
    assert [r["job"] for r in saved["eval-judge"].extra["results"]] == [first.name]
    assert [r["job"] for r in saved["eval-judge-fallback"].extra["results"]] == [last.name]
    assert saved["eval-judge"].extra["results"][0]["summary"]["b"]


async def _wait_job(job_dir: Path, timeout: float) -> jobs.JobStatus:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = jobs.read_status(job_dir)
        if status.terminal:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_dir.name} did not end in {timeout:g} s: {jobs.log_tail(job_dir)}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_format_study_is_a_job_that_outlives_the_app_and_is_cancelled_from_it(tmp_path):
    """x adds the study's specs (saved through the app) and starts it as one detached job; the
    reopened app follows it again, and c cancels it and the step it was running."""
    sf = tiny_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        pane.query_one("#exp-size").value = "4"
        pane.action_run_experiment()
        await wait_until(pilot, lambda: pane.busy and pane.run_job is not None, timeout=10, what="the study's job")
        study = pane.run_job
        assert jobs.read_spec(study)["study"] == "format-comparison"
        await wait_until(
            pilot, lambda: jobs.read_status(study).state == "running", timeout=60, what="the study's worker running"
        )
        await pilot.press("q")
    saved = SessionFile.load(sf.path).session
    assert {d.id for d in saved.datasets} >= {"odile-fc-chat_demos", "odile-fc-first_person", "odile-fc-synthetic_docs"}
    assert {"odile-fc-traits", "odile-fc-ppl"} <= {e.id for e in saved.evals}
    assert not jobs.read_status(study).terminal  # quitting stopped nothing

    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        pane = app.query_one(EvaluatePane)
        await wait_until(
            pilot,
            lambda: pane.busy and pane.run_job == study.resolve(),
            timeout=30,
            what="the reopened pane following the study",
        )
        assert pane.last_progress is None or pane.last_progress[0] == "study"
        pane.query_one("#eval-models").focus()
        await pilot.press("c")
        await wait_until(pilot, lambda: not pane.busy, timeout=180, what="the study to stop")
        assert "stopped: cancelled" in str(pane.query_one("#eval-status").render())
    assert jobs.read_status(study).state == "cancelled"
    steps = [s for s in jobs.list_jobs(sf.workspace) if s.kind in ("dataset", "train")]
    assert steps and all(s.terminal for s in steps)  # the step it was running stopped with it
