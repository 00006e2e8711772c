"""Entry point of a detached job worker: `python -m trainers.worker <job-dir>`.

The job protocol (status, heartbeat, events, cancel) lives in `supervisor.jobs`; this module only
picks the work named by the spec's `kind` and runs it inside the protocol's reporter.
"""

from __future__ import annotations

import sys
from pathlib import Path

from supervisor import jobs

# kind -> module with `run(job: jobs.JobReporter) -> None`
KINDS = {
    "dataset": "trainers.data.job",
    "train": "trainers.train.job",
    "export": "trainers.export.job",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m trainers.worker JOB_DIR", file=sys.stderr)
        return 2
    return jobs.run_worker(Path(argv[0]), KINDS)


if __name__ == "__main__":
    raise SystemExit(main())
