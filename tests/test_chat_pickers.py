"""The Chat pane's model pickers follow the workspace: an export is offered, labelled with its quant
and size, as soon as its job ends verified; one that failed verification is shown, never offered.

The export jobs here run through the real job protocol; their work writes what the export worker
writes at the end (export/report.json, or export-failed.json and a failed job), so the pane is
tested without a minute of conversion. A real export reaching the pickers is in test_export_pane.py.
"""

from __future__ import annotations

import json

import pytest

from export_fixtures import make_session
from persona_tui.app import make_app
from persona_tui.conversation import engine_choices
from persona_tui.panes.chat import ChatPane
from sessions.store import SessionFile
from supervisor import jobs
from waiting import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _verified(job) -> None:
    out = job.dir / "export"
    out.mkdir()
    (out / "report.json").write_text(
        json.dumps(
            {
                "ok": True,
                "job": job.dir.name,
                "run": "r1",
                "seconds": 12.0,
                "files": [
                    {
                        "path": "export/model-f16.gguf",
                        "kind": "gguf",
                        "type": "f16",
                        "bytes": 271_000_000,
                        "seconds": 5.0,
                        "verified": True,
                    },
                    {
                        "path": "export/model-q8_0.gguf",
                        "kind": "gguf",
                        "type": "q8_0",
                        "bytes": 145_000_000,
                        "seconds": 0.7,
                        "verified": True,
                    },
                ],
            }
        )
    )


def _failed_verification(job) -> None:
    error = (
        "verification failed for model-q4_k_m.gguf: mean KL 0.91 > 0.30; "
        "the GGUF does not compute what the trained model computes."
    )
    (job.dir / "export-failed.json").write_text(
        json.dumps({"ok": False, "job": job.dir.name, "run": "r1", "error": error, "files": []})
    )
    job.fail(error)


def _options(pane: ChatPane) -> dict[str, str]:
    return {ref: label for label, ref in pane._choices}


async def test_a_verified_export_is_offered_at_once_and_a_failed_one_is_shown_not_offered(tmp_path):
    sf = make_session(tmp_path)
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        pane = app.query_one(ChatPane)
        assert not [r for r in _options(pane) if r.startswith("export:")]

        good = jobs.create_job(sf.workspace, "export", {"run": "r1"})
        assert jobs.run_job_inline(good, {"export": _verified}).state == "finished"
        await wait_until(
            pilot,
            lambda: f"export:{good.name}:q8_0" in _options(pane),
            timeout=30,
            what="the verified export in the pickers",
        )
        options = _options(pane)
        assert options[f"export:{good.name}:q8_0"] == "export r1 q8_0 145 MB · llama.cpp"
        assert options[f"export:{good.name}:f16"] == "export r1 f16 271 MB · llama.cpp"
        select = pane.query_one("#engine-a")
        assert f"export:{good.name}:q8_0" in [value for _, value in select._options]

        bad = jobs.create_job(sf.workspace, "export", {"run": "r1"})
        assert jobs.run_job_inline(bad, {"export": _failed_verification}).state == "failed"
        await wait_until(pilot, lambda: bad.name in pane.failed, timeout=30, what="the failed export reported")
        assert "mean KL 0.91" in pane.failed[bad.name]
        assert not [r for r in _options(pane) if bad.name in r]
        # The notice is a message to the app, handled after the pane records the failure.
        await wait_until(
            pilot,
            lambda: any("Export failed" in (n.title or "") and bad.name in n.message for n in app._notifications),
            timeout=30,
            what="the failed export's notice",
        )


def test_an_export_made_without_verification_says_so_in_its_label(tmp_path):
    sf = make_session(tmp_path)

    def unverified(job) -> None:
        _verified(job)
        path = job.dir / "export" / "report.json"
        report = json.loads(path.read_text())
        for f in report["files"]:
            f.pop("verified")
        path.write_text(json.dumps(report))

    job = jobs.create_job(sf.workspace, "export", {"run": "r1"})
    assert jobs.run_job_inline(job, {"export": unverified}).state == "finished"
    labels = {c.ref: c.label for c in engine_choices(sf.session, sf.workspace)}
    assert labels[f"export:{job.name}:q8_0"] == "export r1 q8_0 145 MB unverified · llama.cpp"
