"""A tiny real worker for the job-protocol tests: `python -m jobs_fixture_worker <job-dir>`.

The tests put this folder on PYTHONPATH so the detached worker can import it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from supervisor import jobs


def count(job: jobs.JobReporter) -> None:
    """Count to spec n; on cancel, write a checkpoint naming the step reached and return."""
    n = int(job.spec["n"])
    delay = float(job.spec.get("delay", 0.0))
    start = 0
    ckpt = job.dir / "checkpoint.txt"
    job.event(event="process", pid=os.getpid(), sid=os.getsid(0), nice=os.nice(0))
    if ckpt.exists():
        start = int(ckpt.read_text())
        job.log(f"resuming from step {start}")
    for i in range(start, n):
        if job.cancelled:
            ckpt.write_text(str(i))
            job.event(event="checkpoint", step=i)
            job.log(f"cancelled at step {i}; checkpoint saved")
            return
        job.progress(i + 1, n, f"step {i + 1}/{n}")
        job.event(step=i + 1, loss=1.0 / (i + 1))
        time.sleep(delay)
    (job.dir / "result.txt").write_text(f"counted to {n}\n")


def boom(job: jobs.JobReporter) -> None:
    job.log("about to fail")
    raise ValueError(job.spec["message"])


def refuse(job: jobs.JobReporter) -> None:
    job.fail(job.spec["message"])


def hang(job: jobs.JobReporter) -> None:
    job.log("hanging; kill me")
    print("a line on stdout before hanging", flush=True)
    (job.dir / "hanging").touch()
    while True:
        time.sleep(0.05)


KINDS = {
    "count": "jobs_fixture_worker:count",
    "boom": "jobs_fixture_worker:boom",
    "refuse": "jobs_fixture_worker:refuse",
    "hang": "jobs_fixture_worker:hang",
}


if __name__ == "__main__":
    raise SystemExit(jobs.run_worker(Path(sys.argv[1]), KINDS))
