"""The openai backend against a local server speaking the fine-tuning wire format.

The server (stdlib http.server on 127.0.0.1) answers /v1/files (multipart upload),
/v1/fine_tuning/jobs (create), /v1/fine_tuning/jobs/{id} (status), .../events (newest first,
metrics events with data.step / data.train_loss) and .../cancel, and checks the bearer key.
"""

from __future__ import annotations

import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sessions.model import RunSpec
from sessions.store import SessionFile
from supervisor import jobs
from train_fixtures import CHATS, make_session
from trainers.train.backends import validate
from trainers.train.job import create_train_job
from trainers.train.reader import read_result
from trainers.worker import KINDS

KEY = "sk-test-0123456789abcdef"
FT_MODEL = "ft:gpt-4o-mini-2024-07-18:persona-org:ada:AbC123"


class FakeOpenAI:
    """State of the fake service: uploads, jobs, and how a job progresses per status poll."""

    def __init__(self, steps: int = 3, fail: str = "") -> None:
        self.steps = steps
        self.fail = fail
        self.uploads: list[bytes] = []
        self.created: list[dict] = []
        self.cancelled: list[str] = []
        self.polls = 0
        self.events: list[dict] = []
        self.status = "validating_files"
        self.lock = threading.Lock()

    def job(self, job_id: str) -> dict:
        return {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": self.created[0]["model"],
            "created_at": 1700000000,
            "finished_at": 1700000100 if self.status in ("succeeded", "failed", "cancelled") else None,
            "fine_tuned_model": FT_MODEL if self.status == "succeeded" else None,
            "organization_id": "org-test",
            "result_files": [],
            "status": self.status,
            "validation_file": None,
            "training_file": self.created[0]["training_file"],
            "hyperparameters": {"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.8},
            "trained_tokens": 1234 if self.status == "succeeded" else None,
            "error": {"code": "invalid_training_file", "message": self.fail, "param": "training_file"}
            if self.status == "failed"
            else None,
            "seed": self.created[0].get("seed", 0),
            "estimated_finish": None,
            "integrations": [],
            "method": self.created[0].get("method"),
        }

    def advance(self) -> None:
        """Each status poll moves the remote job on: validating -> running (one step a poll) -> done."""
        self.polls += 1
        n = len([e for e in self.events if e["type"] == "metrics"])
        if self.status == "validating_files":
            self.status = "running"
            self._event("message", "Fine-tuning job started")
        elif self.status == "running":
            if self.fail:
                self.status = "failed"
                self._event("message", f"Fine-tuning job failed: {self.fail}")
            elif n < self.steps:
                step = n + 1
                loss = 2.0 - 0.4 * step
                self._event(
                    "metrics",
                    f"Step {step}/{self.steps}: training loss={loss:.2f}",
                    {
                        "step": step,
                        "train_loss": loss,
                        "total_steps": self.steps,
                        "train_mean_token_accuracy": 0.5 + 0.1 * step,
                    },
                )
            else:
                self.status = "succeeded"
                self._event("message", "The job has successfully completed")

    def _event(self, kind: str, message: str, data: dict | None = None) -> None:
        self.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{len(self.events) + 1}",
                "created_at": 1700000000 + len(self.events),
                "level": "info",
                "message": message,
                "data": data or {},
                "type": kind,
            }
        )


def make_handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                self._send(
                    401,
                    {
                        "error": {
                            "message": "Incorrect API key provided.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                )
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_POST(self):  # noqa: N802
            if not self._authorised():
                return
            body = self._body()
            with fake.lock:
                if self.path == "/v1/files":
                    msg = BytesParser(policy=HTTP).parsebytes(
                        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                    )
                    parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
                    assert parts["purpose"].get_content().strip() == "fine-tune"
                    content = parts["file"].get_payload(decode=True)
                    fake.uploads.append(content)
                    return self._send(
                        200,
                        {
                            "object": "file",
                            "id": "file-abc123",
                            "bytes": len(content),
                            "created_at": 1700000000,
                            "filename": "openai_train.jsonl",
                            "purpose": "fine-tune",
                            "status": "processed",
                        },
                    )
                if self.path == "/v1/fine_tuning/jobs":
                    fake.created.append(json.loads(body))
                    return self._send(200, fake.job("ftjob-xyz789"))
                if self.path == "/v1/fine_tuning/jobs/ftjob-xyz789/cancel":
                    fake.cancelled.append("ftjob-xyz789")
                    fake.status = "cancelled"
                    return self._send(200, fake.job("ftjob-xyz789"))
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

        def do_GET(self):  # noqa: N802
            if not self._authorised():
                return
            with fake.lock:
                path = self.path.split("?")[0]
                if path == "/v1/fine_tuning/jobs/ftjob-xyz789":
                    fake.advance()
                    return self._send(200, fake.job("ftjob-xyz789"))
                if path == "/v1/fine_tuning/jobs/ftjob-xyz789/events":
                    data = list(reversed(fake.events))  # newest first, as the API lists them
                    return self._send(200, {"object": "list", "data": data, "has_more": False})
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    return Handler


@pytest.fixture
def server():
    def start(**kwargs):
        fake = FakeOpenAI(**kwargs)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return fake, f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    servers: list[ThreadingHTTPServer] = []
    yield start
    for s in servers:
        s.shutdown()


def openai_run(base_url: str, key_env: str = "PERSONA_TUI_TEST_OPENAI_KEY") -> RunSpec:
    run = RunSpec(id="ft", base_model="gpt-4o-mini-2024-07-18", datasets=["chats"], backend="openai")
    run.extra["openai"] = {"base_url": base_url, "api_key_env": key_env, "poll_seconds": 0.02, "suffix": "ada"}
    return run


def test_openai_run_uploads_chats_polls_events_and_records_the_model(tmp_path, server, monkeypatch):
    fake, url = server(steps=3)
    monkeypatch.setenv("PERSONA_TUI_TEST_OPENAI_KEY", KEY)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [openai_run(url)])
    job_dir = create_train_job(sf, "ft")
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "finished", status.error

    # The upload is OpenAI's chat format: one {"messages": [...]} per line, without our meta.
    lines = [json.loads(x) for x in fake.uploads[0].decode().splitlines()]
    assert len(lines) == len(CHATS)
    assert lines[0] == {"messages": CHATS[0]["messages"]}
    created = fake.created[0]
    assert created["model"] == "gpt-4o-mini-2024-07-18" and created["training_file"] == "file-abc123"
    assert created["method"]["type"] == "supervised" and created["suffix"] == "ada"

    events, _ = jobs.read_events(job_dir)
    steps = [e for e in events if e.get("event") == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert [round(e["loss"], 2) for e in steps] == [1.6, 1.2, 0.8]
    assert steps[-1]["max_steps"] == 3 and steps[-1]["token_accuracy"] == pytest.approx(0.8)
    result = read_result(job_dir)
    assert result["engine"] == {
        "id": "run-ft",
        "kind": "openai",
        "model": FT_MODEL,
        "base_url": url,
        "api_key_env": "PERSONA_TUI_TEST_OPENAI_KEY",
    }
    assert "Fine-tuning job started" in jobs.log_tail(job_dir, 50)

    # The fine-tuned model is an engine: `run:ft` resolves to it, the chat pane offers it, and
    # the one who followed the job records it in the session.
    from persona_tui.conversation import engine_choices, engine_from_ref
    from trainers.train.job import record_remote_engine

    spec = engine_from_ref("run:ft", sf.session, sf.workspace)
    assert (spec.kind, spec.model, spec.base_url, spec.api_key_env) == (
        "openai",
        FT_MODEL,
        url,
        "PERSONA_TUI_TEST_OPENAI_KEY",
    )
    assert any(c.ref == "run:ft" and "openai" in c.label for c in engine_choices(sf.session, sf.workspace))
    assert record_remote_engine(SessionFile.load(sf.path), job_dir) == "run-ft"
    (engine,) = SessionFile.load(sf.path).session.engines
    assert (engine.id, engine.kind, engine.model) == ("run-ft", "openai", FT_MODEL)

    # The key itself is written nowhere: not in the job, not in the session.
    for path in [*job_dir.rglob("*"), sf.path]:
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_openai_resume_follows_the_same_remote_job(tmp_path, server, monkeypatch):
    fake, url = server(steps=2)
    monkeypatch.setenv("PERSONA_TUI_TEST_OPENAI_KEY", KEY)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [openai_run(url)])
    job_dir = create_train_job(sf, "ft")
    assert jobs.run_job_inline(job_dir, KINDS).state == "finished"
    jobs.requeue_job(job_dir)
    assert jobs.run_job_inline(job_dir, KINDS).state == "finished"
    assert len(fake.created) == 1 and len(fake.uploads) == 1  # no second upload, no second remote job


def test_openai_failure_and_refused_key_end_failed_with_one_sentence(tmp_path, server, monkeypatch):
    fake, url = server(fail="The file has 2 examples; at least 10 are required.")
    monkeypatch.setenv("PERSONA_TUI_TEST_OPENAI_KEY", KEY)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [openai_run(url)])
    status = jobs.run_job_inline(create_train_job(sf, "ft"), KINDS)
    assert status.state == "failed"
    assert "ftjob-xyz789 failed: The file has 2 examples; at least 10 are required." in status.error
    assert "\n" not in status.error

    monkeypatch.setenv("PERSONA_TUI_TEST_OPENAI_KEY", "sk-wrong")
    status = jobs.run_job_inline(create_train_job(sf, "ft"), KINDS)
    assert status.state == "failed"
    assert status.error == f"{url} refused the API key in PERSONA_TUI_TEST_OPENAI_KEY; check the key."


def test_openai_cancel_cancels_the_remote_job(tmp_path, server, monkeypatch):
    fake, url = server(steps=10_000)
    monkeypatch.setenv("PERSONA_TUI_TEST_OPENAI_KEY", KEY)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [openai_run(url)])
    job_dir = create_train_job(sf, "ft")

    def cancel_soon():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([e for e in fake.events if e["type"] == "metrics"]) < 3:
            time.sleep(0.02)
        (Path(job_dir) / "cancel.request").write_text("cancel\n")

    threading.Thread(target=cancel_soon, daemon=True).start()
    status = jobs.run_job_inline(job_dir, KINDS)
    assert status.state == "cancelled"
    assert fake.cancelled == ["ftjob-xyz789"]


def test_openai_validation_names_fields(tmp_path, monkeypatch):
    monkeypatch.delenv("PERSONA_TUI_TEST_OPENAI_KEY", raising=False)
    sf = make_session(
        tmp_path,
        {"chats": ("chat_demos", CHATS), "docs": ("first_person", None)},
        [openai_run("http://127.0.0.1:9/v1")],
    )
    run = sf.session.run("ft")
    problems = validate(run, sf.session)
    assert problems == [
        "run 'ft': openai.api_key_env names PERSONA_TUI_TEST_OPENAI_KEY, which is not set here; "
        "export PERSONA_TUI_TEST_OPENAI_KEY=<your key> first."
    ]
    run.datasets = ["docs"]
    run.extra["openai"]["base_url"] = "api.openai.com"
    problems = validate(run, sf.session)
    assert any("backend is openai, which fine-tunes on chats only; first_person" in p for p in problems)
    assert any("openai.base_url is 'api.openai.com'; it must start with http:// or https://." in p for p in problems)
