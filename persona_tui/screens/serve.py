"""Serve an export from the app: start and stop its OpenAI-compatible server as a service job.

The service is a detached job (`persona-tui serve --detach` does the same), so it outlives the
app and `persona-tui jobs` lists it with its URL. The dialog shows its state and port, and once it
answers an `openai` snippet and the `ssh -L` line to copy. An API key is named by the environment
variable that holds it; its value is never shown, saved or logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from textual.worker import get_current_worker

from supervisor import jobs

POLL_S = 0.5


def live_service(workspace: Path, export: str, quant: str) -> jobs.JobStatus | None:
    """The newest service job of this export's GGUF that is starting or ready, if any."""
    for status in reversed(jobs.list_jobs(workspace)):
        if status.kind != jobs.SERVICE_KIND or status.terminal:
            continue
        try:
            what = jobs.read_spec(status.dir).get("serve") or {}
        except jobs.JobError:
            continue
        if what.get("export") == export and (what.get("quant") or "") == quant:
            return status
    return None


class ServeScreen(ModalScreen[None]):
    """Start, watch and stop the service of one export GGUF (`export:JOBID[:TYPE]`)."""

    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape", "close", "Close")]

    class Seen(Message):
        """The service's state as its status.json says now."""

        def __init__(self, status: jobs.JobStatus | None, error: str = "") -> None:
            super().__init__()
            self.status, self.error = status, error

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ServeScreen.Seen)

    def __init__(self, session_file: Any, ref: str) -> None:
        super().__init__()
        self.session_file = session_file
        body = ref.removeprefix("export:")
        self.export, _, self.quant = body.partition(":")
        self.ref = ref
        self.job_dir: Path | None = None
        self.status: jobs.JobStatus | None = None
        self.usage = ""

    @property
    def workspace(self) -> Path:
        return Path(self.session_file.workspace)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="serve-dialog"):
            yield Label(f"Serve {self.export} {self.quant or ''}".strip(), classes="dialog-title", markup=False)
            yield Static(
                "An OpenAI-compatible server (llama.cpp) for this GGUF, as a service job: it runs on "
                "when you quit, until you stop it here or with persona-tui jobs --cancel, or it is idle.",
                classes="dialog-help",
                markup=False,
            )
            for label, wid, value, tip in (
                ("host", "serve-host", "127.0.0.1", "listen address; 127.0.0.1 is this machine only"),
                ("port", "serve-port", "0", "0 picks a free port"),
                ("idle stop (s)", "serve-idle", "1800", "stop after this many seconds without a request; 0: never"),
                ("API key env var", "serve-key-env", "", "the environment variable holding the key (empty: no key)"),
            ):
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    yield Input(value, id=wid, compact=True, tooltip=tip)
            yield Static("not running", id="serve-state", markup=False)
            yield Static("", id="serve-usage", markup=False)
            yield Label("", id="serve-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="serve-start", compact=True)
                yield Button("Stop", id="serve-stop", compact=True)
                yield Button("Copy", id="serve-copy", compact=True)
                yield Button("Close", id="serve-close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#serve-error").display = False
        existing = live_service(self.workspace, self.export, self.quant)
        if existing is not None:
            self.job_dir = existing.dir
        self._buttons()
        self.query_one(
            "#serve-start" if not self.query_one("#serve-start", Button).disabled else "#serve-close", Button
        ).focus()  # Enter starts it (or closes the dialog of a live service)
        self.follow()

    # -- actions --------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"serve-start": self.start, "serve-stop": self.stop, "serve-copy": self.copy, "serve-close": self.action_close}[
            str(event.button.id)
        ]()

    def action_close(self) -> None:
        self.dismiss(None)  # the service, if any, runs on

    def _error(self, text: str) -> None:
        error = self.query_one("#serve-error", Label)
        error.update(text)
        error.display = bool(text)

    def start(self) -> None:
        from persona_tui.commands.serve import ServeError, create_serve_job

        if self.status is not None and not self.status.terminal:
            return
        values = {w: self.query_one(f"#serve-{w}", Input).value.strip() for w in ("host", "port", "idle", "key-env")}
        try:
            port = int(values["port"] or 0)
            idle = float(values["idle"] or 0)
        except ValueError:
            self._error(f"port {values['port']!r} and idle stop {values['idle']!r} must be numbers.")
            return
        try:
            plan = create_serve_job(
                self.session_file.session,
                self.workspace,
                export=self.export,
                quant=self.quant,
                host=values["host"] or "127.0.0.1",
                port=port,
                idle_timeout_s=idle,
                api_key_env=values["key-env"],
            )
            jobs.start_job(plan.job_dir)
        except (ServeError, jobs.JobError, OSError) as e:
            self._error(str(e))
            return
        from persona_tui.commands.serve import usage_text

        self._error("")
        self.job_dir = plan.job_dir
        self.usage = usage_text(plan.url, plan.alias, plan.api_key_env)
        self.status = jobs.read_status(plan.job_dir)
        self._draw()

    def stop(self) -> None:
        if self.job_dir is not None and jobs.cancel_job(self.job_dir):
            self.query_one("#serve-state", Static).update(f"{self.job_dir.name}: stopping…")

    def copy(self) -> None:
        if self.usage:
            self.app.copy_to_clipboard(self.usage)
            self.notify("Copied the snippet and the ssh line.")

    # -- following the service's files --------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="serve-follow")
    def follow(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            if self.job_dir is not None:
                try:
                    self.post_message(self.Seen(jobs.read_status(self.job_dir)))
                except jobs.JobError as e:
                    self.post_message(self.Seen(None, str(e)))
            time.sleep(POLL_S)

    def on_serve_screen_seen(self, message: Seen) -> None:
        if message.error:
            self._error(message.error)
            return
        self.status = message.status
        if self.status is not None and not self.usage and self.status.url:
            from persona_tui.commands.serve import usage_text

            what = jobs.read_spec(self.status.dir).get("serve") or {}
            service = jobs.read_spec(self.status.dir).get("service") or {}
            self.usage = usage_text(self.status.url, str(what.get("alias", "")), str(service.get("api_key_env", "")))
        self._draw()

    def _draw(self) -> None:
        s = self.status
        if s is None:
            text = "not running"
        elif s.state == "ready":
            text = f"{s.id}\nready at {s.url} (port {s.url.rsplit(':', 1)[1].split('/')[0]})"  # one line at 80 columns
        elif s.state in ("failed", "died"):
            text = f"{s.id}: {s.state}: {s.error.splitlines()[0] if s.error else ''}"
        else:
            text = f"{s.id}: {s.state}" + (f" ({s.message})" if s.message else "")
        self.query_one("#serve-state", Static).update(text)
        self.query_one("#serve-usage", Static).update(self.usage if s is not None and s.state == "ready" else "")
        self._buttons()

    def _buttons(self) -> None:
        live = (
            self.status is not None and not self.status.terminal or (self.job_dir is not None and self.status is None)
        )
        self.query_one("#serve-start", Button).disabled = live
        self.query_one("#serve-stop", Button).disabled = not live
        self.query_one("#serve-copy", Button).disabled = not (self.status is not None and self.status.state == "ready")
