"""The Train pane with Pilot: the form checks as you type; the chart follows a job's files and
picks its history up again after the app is quit and reopened."""

from __future__ import annotations

import pytest

from persona_tui.app import make_app
from persona_tui.panes.train import TrainPane
from sessions.store import SessionFile
from supervisor import jobs
from train_fixtures import CHATS, make_session, tiny_run
from waiting import wait_until

pytestmark = pytest.mark.anyio


def _fake_steps(job) -> None:
    """A real job (the protocol's worker side) that writes the events a training run writes."""
    job.event(event="train_begin", run="r1", resumed_from=None)
    for step, loss in enumerate([3.0, 2.5, 2.1], 1):
        job.event(
            event="step",
            step=step,
            max_steps=3,
            loss=loss,
            lr=1e-3,
            tokens_per_s=120.0,
            eta=3 - step,
            elapsed=float(step),
            s_per_step=1.0,
            peak_mb=1500.0,
        )
        job.progress(step, 3)
    job.event(event="eval", step=3, eval_loss=2.4)


async def test_form_validates_as_you_type(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-tabs").active = "train-settings"
        await pilot.pause()
        lr = pane.query_one("#f-training-learning_rate")
        problems = pane.query_one("#form-problems")
        lr.value = "-1"
        await pilot.pause()
        assert lr.has_class("-invalid")
        assert "training.learning_rate is -1; it must be a number from 1e-09 to 1.0" in str(problems.render())
        lr.value = "fast"
        await pilot.pause()
        assert "training.learning_rate is 'fast'; it must be a number." in str(problems.render())
        lr.value = "0.0005"
        await pilot.pause()
        assert not lr.has_class("-invalid") and "ready to start" in str(problems.render())
        assert app.session_file.session.run("r1").training.learning_rate == 0.0005
        pane.query_one("#f-datasets").value = "chats, nope"
        await pilot.pause()
        assert pane.query_one("#f-datasets").has_class("-invalid")
        assert "datasets names 'nope'" in str(problems.render())
        await pilot.press("s")  # refused: the run has a problem, nothing starts
        await pilot.pause()
        assert not (sf.workspace / "jobs").exists()


async def test_padding_free_is_a_setting_of_the_form_auto_true_or_false(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-tabs").active = "train-settings"
        await pilot.pause()
        select = pane.query_one("#f-training-padding_free")
        assert select.value == "auto"
        select.value = "false"
        await pilot.pause()
        assert app.session_file.session.run("r1").training.padding_free is False
        select.value = "auto"
        await pilot.pause()
        assert app.session_file.session.run("r1").training.padding_free is None


async def test_chart_and_stats_come_from_the_job_files(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id="train-r1-done")
    assert jobs.run_job_inline(job_dir, {"train": _fake_steps}).state == "finished"
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        machine = lambda: str(pane.query_one("#machine").render())  # noqa: E731
        # The history, the stats and the machine line come from different threads: wait for all.
        await wait_until(
            pilot,
            lambda: (
                pane.histories.get("train-r1-done")
                and pane.histories["train-r1-done"].steps
                and "step 3/3" in str(pane.query_one("#live-stats").render())
                and ("CPU" in machine() or "GPU" in machine())
            ),
            what="the job's history, stats and the machine line",
        )
        history = pane.histories["train-r1-done"]
        assert history.steps == [(1, 3.0), (2, 2.5), (3, 2.1)] and history.evals == [(3, 2.4)]
        stats = str(pane.query_one("#live-stats").render())
        assert "train-r1-done  finished" in stats and "step 3/3" in stats and "loss 2.1000" in stats
        assert "eval 2.4000" in stats and "120 tok/s" in stats
        table = pane.query_one("#job-table")
        assert table.row_count == 1 and str(table.get_row_at(0)[1]) == "✓ 3/3"  # finished, 3 of 3 steps
        assert "CPU" in str(pane.query_one("#machine").render()) or "GPU" in str(pane.query_one("#machine").render())


def _noisy_steps(job) -> None:
    """Thirty steps whose single losses zig-zag around a falling trend, and two evaluations."""
    job.event(event="train_begin", run="r1", resumed_from=None)
    for step, loss in enumerate(NOISY, 1):
        job.event(event="step", step=step, max_steps=len(NOISY), loss=loss, lr=1e-3, tokens_per_s=100.0)
        job.progress(step, len(NOISY))
    job.event(event="eval", step=15, eval_loss=3.1)
    job.event(event="eval", step=30, eval_loss=2.6)


NOISY = [3.5 - 0.03 * i + (0.4 if i % 2 else -0.4) for i in range(30)]


async def test_the_chart_draws_a_smoothed_line_over_the_raw_points_and_m_toggles_it(tmp_path):
    from textual.widgets._footer import FooterKey

    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id="train-r1-noisy")
    assert jobs.run_job_inline(job_dir, {"train": _noisy_steps}).state == "finished"
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)

        def stats():
            return str(pane.query_one("#live-stats").render())

        await wait_until(
            pilot, lambda: "(first/last" in stats() and len(pane.drawn) == 3, what="the job's loss summary and chart"
        )
        # The summary: means of the first and last 5 of 30 points (10%, at least 5), eval first and last.
        first, last = sum(NOISY[:5]) / 5, sum(NOISY[-5:]) / 5
        assert f"loss {first:.3f}→{last:.3f} (first/last 5)  eval 3.100→2.600" in stats()
        assert pane.drawn == ["r1 raw", "r1 5-step mean", "r1 eval"]
        await wait_until(
            pilot,
            lambda: "Smooth" in [k.description for k in app.screen.query(FooterKey)],
            what="the smoothing key in the footer",
        )
        await pilot.press("m")
        assert not pane.smoothed and pane.drawn == ["r1 train", "r1 eval"]
        await pilot.press("m")
        assert pane.smoothed and pane.drawn == ["r1 raw", "r1 5-step mean", "r1 eval"]


async def test_space_marks_a_job_to_overlay_and_the_mark_shows_at_once(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    for name in ("train-20261201-101500-aaaa", "train-20261201-111500-bbbb"):
        job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id=name)
        assert jobs.run_job_inline(job_dir, {"train": _fake_steps}).state == "finished"
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        table = pane.query_one("#job-table")
        await wait_until(pilot, lambda: table.row_count == 2, what="both jobs listed")
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("space")
        assert pane.compare == {"train-20261201-101500-aaaa"}
        # Marked in the state cell, the job's time whole (the jobs column is 11 wide).
        assert [str(c) for c in table.get_row_at(0)] == ["12-01 10:15", "◆ ✓ 3/3"]
        assert str(table.get_row_at(1)[1]) == "✓ 3/3"
        await pilot.press("space")
        assert pane.compare == set() and str(table.get_row_at(0)[1]) == "✓ 3/3"


@pytest.mark.slow
async def test_start_a_run_quit_reopen_and_the_history_is_there(tmp_path):
    run = tiny_run("r1", ["chats"], max_steps=200, save_steps=1000, learning_rate=1e-4)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    app = make_app(SessionFile.load(sf.path))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            pane = app.query_one(TrainPane)
            await pilot.press("s")
            await wait_until(pilot, lambda: pane.selected_job is not None, what="the job to start")
            job_id = pane.selected_job
            await wait_until(
                pilot,
                lambda: len(getattr(pane.histories.get(job_id), "steps", [])) >= 2,
                timeout=400,
                what="two loss points on the chart",
            )
            seen = list(pane.histories[job_id].steps)
        # The app is gone; the detached worker is not.
        assert jobs.read_status(jobs.jobs_root(sf.workspace) / job_id).state == "running"
        app = make_app(SessionFile.load(sf.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            pane = app.query_one(TrainPane)
            await wait_until(
                pilot,
                lambda: len(getattr(pane.histories.get(job_id), "steps", [])) >= len(seen),
                timeout=60,
                what="the history after reopening",
            )
            assert pane.histories[job_id].steps[: len(seen)] == seen
            assert pane.selected_job == job_id
            await pilot.press("c")
            await wait_until(
                pilot,
                lambda: jobs.read_status(jobs.jobs_root(sf.workspace) / job_id).terminal,
                timeout=300,
                what="the cancel",
            )
    finally:
        for s in jobs.list_jobs(sf.workspace):
            if not s.terminal:
                jobs.cancel_job(s.dir, force=True)


def test_train_pane_at_80x24(snap_compare, tmp_path, monkeypatch):
    """A finished run at the smallest size: short job ids with state and steps, the chart (a
    smoothed line over the raw points), the loss summary, the job's own log lines, the machine
    line (a fixed text here: real CPU figures move), the smoothing key in the footer."""
    import persona_tui.panes.train as train_pane

    monkeypatch.setattr(train_pane, "machine_text", lambda: "CPU  12% of 2  load 0.4  RAM 1.6/23.5 GiB")
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id="train-20261201-122208-d783")

    assert jobs.run_job_inline(job_dir, {"train": _noisy_steps}).state == "finished"  # a smoothed line to draw
    # What a worker's log holds: its own stamped lines among a library's warnings (fixed times).
    (job_dir / "log.txt").write_text(
        "[12:22:11] loading bundled:smollm2-135m-instruct for sft on cpu (fp32, adamw_torch)\n"
        "/site-packages/transformers/training_args.py:1541: FutureWarning: `x` is deprecated\n"
        "  warnings.warn(\n"
        "[12:22:40] training finished at step 3; adapter in adapter\n"
        "/site-packages/transformers/modeling_utils.py:3312: FutureWarning: `y` is deprecated\n"
    )
    app = make_app(SessionFile.load(sf.path))

    async def show_train(pilot):
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        await wait_until(
            pilot,
            lambda: (
                "step 30/30" in str(pane.query_one("#live-stats").render())
                and len(pane.drawn) == 3
                and "CPU" in str(pane.query_one("#machine").render())
            ),
            what="the job's history",
        )
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=show_train)


@pytest.mark.parametrize(
    "job_id, shown",
    [
        ("train-20261201-122208-d783", "12-01 12:22"),
        ("train-odile-chat-lora-20261201-123345-e1ec", "12-01 12:33"),
        ("train-r1-done", "r1-done"),
    ],
)
def test_short_job_ids_fit_the_jobs_column(job_id, shown):
    from persona_tui.panes.train import short_job_id

    assert short_job_id(job_id) == shown


@pytest.mark.slow
async def test_start_puts_the_live_view_on_the_new_job_at_once(tmp_path):
    """`s` shows the new job before its first step, and the next listing of the jobs does not move
    the view back to the finished job the cursor was on (tried in tmux: it did, for 45 s)."""
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"], max_steps=50)])
    old = "train-20261201-101500-aaaa"
    assert (
        jobs.run_job_inline(
            jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id=old), {"train": _fake_steps}
        ).state
        == "finished"
    )
    app = make_app(SessionFile.load(sf.path))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            pane = app.query_one(TrainPane)
            table = pane.query_one("#job-table")
            stats = lambda: str(pane.query_one("#live-stats").render())  # noqa: E731
            await wait_until(
                pilot,
                lambda: pane.selected_job == old and f"{old}  finished" in stats(),
                what="the finished job on the Live view",
            )
            await pilot.press("s")
            await wait_until(pilot, lambda: pane.selected_job not in (None, old), what="the new job")
            new = pane.selected_job
            assert new.startswith("train-") and f"{new}  " in stats()
            assert not getattr(pane.histories.get(new), "steps", [])  # shown before its first step
            # Two listings later (one every 2 s) the view and the cursor are still on the new job.
            listed = pane.statuses.get(new)
            await wait_until(
                pilot,
                lambda: table.row_count == 2 and pane.statuses.get(new) is not listed,
                what="the jobs listed again",
            )
            await wait_until(
                pilot,
                lambda: table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value == new,
                timeout=10,
                what="the cursor on the new job",
            )
            assert pane.selected_job == new and f"{new}  " in stats()
    finally:
        for s in jobs.list_jobs(sf.workspace):
            if not s.terminal:
                jobs.cancel_job(s.dir, force=True)


def _fake_export(job) -> None:
    """What an export job's worker reports: steps with progress, one verification event per GGUF."""
    names = ["merge", "f16", "q8_0", "q4_k_m", "reference", "check-f16", "check-q8_0", "check-q4_k_m"]
    for done, name in enumerate(names, 1):
        job.progress(done - 1, len(names), f"{name} …")
        if name.startswith("check-"):
            passed = name != "check-q4_k_m"
            job.event(
                event="export_step",
                step=name,
                passed=passed,
                top1=0.98 if passed else 0.61,
                mean_kl=0.0123 if passed else 0.9,
                greedy_equal=1.0,
                seconds=1.0,
            )
        job.progress(done, len(names))
    job.fail("verification failed for model-q4_k_m.gguf: top-1 0.61 < 0.80")


async def test_the_live_view_follows_an_export_job_with_each_gguf_verification(tmp_path):
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [tiny_run("r1", ["chats"])])
    train = jobs.create_job(sf.workspace, "train", {"run": {"id": "r1"}}, job_id="train-20261201-101500-aaaa")
    assert jobs.run_job_inline(train, {"train": _fake_steps}).state == "finished"
    export = jobs.create_job(sf.workspace, "export", {"train_job": train.name}, job_id="export-20261201-111500-bbbb")
    assert jobs.run_job_inline(export, {"export": _fake_export}).state == "failed"
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        table = pane.query_one("#job-table")
        stats = lambda: str(pane.query_one("#live-stats").render())  # noqa: E731
        await wait_until(pilot, lambda: table.row_count == 2 and "q4_k_m" in stats(), what="the export followed")
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["12-01 10:15", "exp 11:15"]
        lines = stats().splitlines()
        assert lines[0] == "export-20261201-111500-bbbb  failed  step 8/8"
        assert lines[1:4] == [
            "f16: top-1 0.980  KL 0.0123  pass",
            "q8_0: top-1 0.980  KL 0.0123  pass",
            "q4_k_m: top-1 0.610  KL 0.9000  FAIL",
        ]
        assert "verification failed for model-q4_k_m.gguf" in lines[4]
        # All five lines are on the screen at 80x24, not cut by the stats' height.
        assert 5 <= pane.query_one("#live-stats").size.height < 8  # (the error line wraps at 52 columns)
