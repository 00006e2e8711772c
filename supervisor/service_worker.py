"""Entry point of a service job's worker: `python -m supervisor.service_worker <job-dir>`.

A service (a server others use while it runs) needs nothing but the job protocol, so its worker
lives beside it; `supervisor.jobs.run_service` does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

from supervisor import jobs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m supervisor.service_worker JOB_DIR", file=sys.stderr)
        return 2
    return jobs.run_worker(Path(argv[0]), {jobs.SERVICE_KIND: jobs.run_service})


if __name__ == "__main__":
    raise SystemExit(main())
