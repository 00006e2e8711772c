"""Entry point of a detached eval worker: `python -m evaluators.worker <job-dir>`.

The job protocol lives in `supervisor.jobs`; this module only names the work of each kind.
"""

from __future__ import annotations

import sys
from pathlib import Path

from supervisor import jobs

# kind -> module with `run(job: jobs.JobReporter) -> None`
KINDS = {
    "eval": "evaluators.evaluate.job",
    "eval_queue": "evaluators.evaluate.queue",  # a parent: runs eval jobs in order
    "experiment": "evaluators.experiments.job",  # a parent: a study started from the app
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m evaluators.worker JOB_DIR", file=sys.stderr)
        return 2
    return jobs.run_worker(Path(argv[0]), KINDS)


if __name__ == "__main__":
    raise SystemExit(main())
