"""Serving a real export as a service job: llama-cpp-python's server on 127.0.0.1 serving the GGUF
of the shared test export (tests/export_fixtures.py), started from the app (it outlives the app;
cancel stops it) and from the CLI with --detach (the idle timeout stops it)."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from export_fixtures import build_shared_export
from persona_tui.app import make_app
from persona_tui.panes.chat import ChatPane
from persona_tui.screens.serve import ServeScreen
from sessions.store import SessionFile
from supervisor import jobs
from waiting import wait_for, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CLI = [sys.executable, "-m", "persona_tui.cli"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return build_shared_export(tmp_path_factory.getbasetemp())


@pytest.fixture
def no_live_services(shared):
    yield
    for s in jobs.list_jobs(shared.workspace):
        if s.kind == jobs.SERVICE_KIND and not s.terminal:
            jobs.cancel_job(s.dir, force=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as r:
            return r.status in (200, 401)
    except urllib.error.HTTPError as e:
        return e.code == 401
    except OSError:
        return False


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, COLUMNS="220", HF_HUB_OFFLINE="1"),
    )


async def test_a_service_started_in_the_app_outlives_it_keeps_its_key_secret_and_cancel_stops_it(
    shared, no_live_services, monkeypatch
):
    import openai

    key = "sk-test-" + secrets.token_hex(12)
    monkeypatch.setenv("PT_SERVE_TEST_KEY", key)
    ref = f"export:{shared.export_job.name}:q8_0"
    app = make_app(SessionFile.load(shared.session))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        pane = app.query_one(ChatPane)
        assert ref in {r for _, r in pane._choices}
        pane.set_engines(ref)
        await pilot.press("ctrl+o")
        screen = app.screen
        assert isinstance(screen, ServeScreen)
        screen.query_one("#serve-key-env").value = "PT_SERVE_TEST_KEY"
        screen.query_one("#serve-idle").value = "0"
        await pilot.click("#serve-start")
        await wait_until(
            pilot,
            lambda: screen.status is not None and screen.status.state in ("ready", "failed", "died"),
            timeout=240,
            what="the service to answer",
        )
        assert screen.status.state == "ready", screen.status.error
        url, job_dir = screen.status.url, screen.job_dir
        port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1", url).group(1))
        await wait_until(pilot, lambda: "from openai" in str(screen.query_one("#serve-usage").render()), timeout=10)
        assert f"ready at {url} (port {port})" in str(screen.query_one("#serve-state").render())
        usage = str(screen.query_one("#serve-usage").render())
        assert f'OpenAI(base_url="{url}", api_key=os.environ["PT_SERVE_TEST_KEY"])' in usage
        assert f"ssh -L {port}:127.0.0.1:{port} " in usage and key not in usage
        await pilot.press("escape")  # closing the dialog leaves the service up
    # The app is gone; the service is not.
    client = openai.OpenAI(base_url=url, api_key=key)
    reply = client.chat.completions.create(
        model=f"{shared.export_job.name}-model-q8_0",
        max_tokens=8,
        temperature=0,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert reply.choices[0].message.content.strip()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="sk-wrong").models.list()
    client.close()

    listing = _cli("jobs", str(shared.session))
    row = next(line for line in listing.stdout.splitlines() if job_dir.name in line)
    assert "service" in row and f"ready at {url}" in row
    # The key was never written down: not in the job's files, the session, or its workspace's small files.
    for path in [shared.session, *shared.workspace.rglob("*")]:
        if path.is_file() and path.stat().st_size < 10_000_000:
            assert key not in path.read_text(errors="replace"), path

    done = _cli("jobs", str(shared.session), "--cancel", job_dir.name)
    assert done.returncode == 0 and "cancel requested" in done.stdout
    stopped = wait_for(lambda: (s := jobs.read_status(job_dir)).terminal and s, timeout=60, what="the service to stop")
    assert stopped.state == "stopped" and stopped.message == "stopped: cancelled"
    assert not _answers(url)


def test_a_detached_service_from_the_cli_stops_when_idle(shared, no_live_services):
    done = _cli(
        "serve",
        str(shared.session),
        "--export",
        shared.export_job.name,
        "--quant",
        "q4_k_m",
        "--port",
        "0",
        "--detach",
        "--idle-timeout",
        "6",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    url = next(line for line in lines if line.startswith("http://127.0.0.1:"))
    assert "ready" in lines and f"ssh -L {url.rsplit(':', 1)[1].split('/')[0]}:127.0.0.1:" in done.stdout
    job_id = re.search(r"service job (\S+);", done.stdout).group(1)
    job_dir = jobs.jobs_root(shared.workspace) / job_id
    assert _answers(url) and jobs.read_status(job_dir).state == "ready"
    stopped = wait_for(lambda: (s := jobs.read_status(job_dir)).terminal and s, timeout=120, what="the idle stop")
    assert stopped.state == "stopped" and stopped.message == "stopped: idle for 6 s"
    assert not _answers(url)


def _proc_state(pid: int) -> str:
    """The process's state and wait channel, for a failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return f"process {pid} is gone"
    state = next((line for line in status.splitlines() if line.startswith("State:")), "State: ?")
    threads = next((line for line in status.splitlines() if line.startswith("Threads:")), "")
    return f"process {pid} {state}, {threads}, waiting in {wchan or '?'}"


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (the tmux server that was its parent is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to run the app in a terminal")
def test_serve_from_the_app_in_a_terminal_survives_the_terminal_closing(shared, no_live_services):
    """The installed command in tmux, as a person uses it: Chat, the export typed in (ctrl+e), ctrl+o,
    Enter; then the terminal is closed outright (kill-server: the app gets SIGHUP) and the server
    still answers an `openai` client; `jobs --cancel` stops it."""
    import openai

    exe = Path(sys.executable).with_name("persona-tui")
    command = [str(exe)] if exe.exists() else [*CLI]
    tmux = ["tmux", "-L", f"serve-test-{os.getpid()}", "-f", "/dev/null"]
    shell = f"exec env -u COLUMNS -u LINES TERM=xterm-256color {shlex.join(command)} {shlex.quote(str(shared.session))}"
    subprocess.run([*tmux, "new-session", "-d", "-s", "app", "-x", "100", "-y", "30", shell], check=True)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-J", "-t", "app"], capture_output=True, text=True).stdout

    def keys(*names: str) -> None:
        subprocess.run([*tmux, "send-keys", "-t", "app", *names], check=True)

    ref = f"export:{shared.export_job.name}:q8_0"
    try:
        app_pid = int(
            subprocess.run(
                [*tmux, "display-message", "-p", "-t", "app", "#{pane_pid}"], capture_output=True, text=True, check=True
            ).stdout
        )
        wait_for(lambda: "4 Chat" in screen(), 60, what="the app")
        keys("4")
        wait_for(lambda: "Serve…" in screen(), 30, what="the Chat pane")
        keys("C-e")
        wait_for(lambda: "Engine reference" in screen(), 30, what="the engine prompt")
        keys("-l", ref)
        keys("Enter")
        wait_for(lambda: f"B: {ref}" in screen(), 30, what="column B on the export")
        keys("C-o")
        wait_for(lambda: f"Serve {shared.export_job.name} q8_0" in screen(), 30, what="the serve dialog")
        keys("Enter")
        try:
            found = wait_for(
                lambda: re.search(r"ready at (http://127\.0\.0\.1:\d+/v1) \(port \d+\)", screen()),
                240,
                what="the service ready on screen",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{screen()}") from None
        url = found.group(1)
        wait_for(lambda: "ssh -L" in screen(), 10, what="the ssh line")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    try:
        wait_for(lambda: _ended(app_pid), 60, what="the app to end with its terminal")
    except AssertionError as e:
        raise AssertionError(f"{e}; {_proc_state(app_pid)}") from None
    client = openai.OpenAI(base_url=url, api_key="sk-no-key")
    reply = client.chat.completions.create(
        model=f"{shared.export_job.name}-model-q8_0",
        max_tokens=8,
        temperature=0,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert reply.choices[0].message.content.strip()
    client.close()
    service = next(s for s in jobs.list_jobs(shared.workspace) if s.kind == jobs.SERVICE_KIND and s.url == url)
    assert service.state == "ready"
    assert _cli("jobs", str(shared.session), "--cancel", service.id).returncode == 0
    stopped = wait_for(lambda: (s := jobs.read_status(service.dir)).terminal and s, timeout=60, what="the stop")
    assert stopped.state == "stopped" and not _answers(url)
