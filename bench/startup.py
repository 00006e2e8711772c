"""How fast `persona-tui SESSION.toml` paints its first frame, against bare Python starts.

Each run spawns the installed command in a pseudo-terminal (100x30) and times process start ->
the first complete frame of the Personas pane on the terminal.
`PERSONA_TUI_EXIT_ON_FIRST_PAINT=1` makes the app quit right after that frame. Baselines,
measured in the same run: `python -c pass` and `python -c "import textual"` (start -> exit).

    .venv/bin/python bench/startup.py [--runs 10] [--session demo.toml]

Target (issue 2): first paint <= 0.4 s on a 2-core machine. The table prints the load average:
on a machine busy with other work, wall times stretch with it (the "cpu s" column, user +
system seconds of the whole run, much less); `chrt -f 50 .venv/bin/python bench/startup.py`
(as root) comes close to what an idle machine shows.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

TARGET_S = 0.4
SIZE = (30, 100)  # rows, columns
# A label of the Personas form: once it is on the terminal, so is the session's first frame
# (Textual writes a frame in one go; the footer fills in its keys a frame later).
MARKER = b"Traits (a: add"


def wait_cpu(proc: subprocess.Popen) -> float:
    """Wait for `proc` and return the CPU seconds (user + system) it used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def first_paint(command: list[str], timeout: float = 30.0) -> tuple[float, float]:
    """Seconds from spawning `command` in a pty to MARKER appearing on the terminal, and the
    CPU seconds the whole run used (start to exit, so a little more than to the first frame)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[0], SIZE[1], 0, 0))
    env = dict(os.environ, TERM="xterm-256color", PERSONA_TUI_EXIT_ON_FIRST_PAINT="1")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    seen = b""
    painted = None
    try:
        deadline = start + timeout
        while painted is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"no frame within {timeout} s; output so far: {seen[-500:]!r}")
            ready, _, _ = select.select([leader], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the app exited and the pty closed
                chunk = b""
            if not chunk:
                raise RuntimeError(f"the app exited before painting; output: {seen[-500:]!r}")
            seen += chunk
            if MARKER in seen:
                painted = time.perf_counter() - start
        # Drain until the app has exited so it is never blocked writing to a full pty.
        while True:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    if not os.read(leader, 65536):
                        break
                except OSError:
                    break
            elif proc.poll() is not None:
                break
        cpu = wait_cpu(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return painted, cpu


def run_to_exit(command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu = wait_cpu(proc)
    return time.perf_counter() - start, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--session", type=Path, help="session to open (default: a fresh demo session)")
    args = parser.parse_args()

    python = sys.executable
    script = Path(python).parent / "persona-tui"
    app_command = [str(script)] if script.exists() else [python, "-m", "persona_tui.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        session = args.session
        if session is None:
            from sessions.demo import write_demo_session

            session = write_demo_session(Path(tmp))
        cases = [
            ("python -c pass", lambda: run_to_exit([python, "-c", "pass"])),
            ('python -c "import textual"', lambda: run_to_exit([python, "-c", "import textual"])),
            ("persona-tui: first paint", lambda: first_paint([*app_command, str(session)])),
        ]
        first_paint([*app_command, str(session)])  # warm the file cache once, untimed
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in cases}
        load_before = os.getloadavg()[0]
        for _ in range(args.runs):  # interleaved, so load changes hit every case alike
            for name, measure in cases:
                results[name].append(measure())

    base = statistics.median(wall for wall, _ in results["python -c pass"])
    print(
        f"startup, {args.runs} runs each, {os.cpu_count()} CPUs, load average "
        f"{load_before:.2f} before / {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'what':<28} {'median s':>9} {'min s':>7} {'max s':>7} {'x python':>9} {'cpu s':>7}")
    for name, runs in results.items():
        times = [wall for wall, _ in runs]
        median = statistics.median(times)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:<28} {median:>9.3f} {min(times):>7.3f} {max(times):>7.3f} {median / base:>9.1f} {cpu:>7.3f}")
    paint = statistics.median(wall for wall, _ in results["persona-tui: first paint"])
    verdict = "meets" if paint <= TARGET_S else "MISSES"
    print(f"first paint median {paint:.3f} s {verdict} the {TARGET_S} s target")
    return 0 if paint <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
