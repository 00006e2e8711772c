"""The one reader of an export job's products: what the CLI, the Chat pickers, run references and
evaluations read back.

An export job's folder holds `export/` (the merged model, the GGUFs, the Modelfile and
`report.json`, which names every file, the base model and the verification) once the export
finished, or `export-failed.json` (the same report with the error) when it did not; see
trainers.export.job for what writes them. Nothing here imports an ML library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor import jobs

EXPORT_DIR = "export"
REPORT_FILE = "report.json"
FAILED_FILE = "export-failed.json"


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_report(job_dir: str | Path) -> dict[str, Any] | None:
    """The export's report (export/report.json), or the failure report, or None."""
    job_dir = Path(job_dir)
    for path in (job_dir / EXPORT_DIR / REPORT_FILE, job_dir / FAILED_FILE):
        if path.is_file():
            data = read_json_object(path)
            if data:
                return data
    return None


def report_beside(gguf: str | Path) -> dict[str, Any]:
    """The report of the export a GGUF file belongs to (the report.json in its folder); {} when
    the file is not in an export's folder."""
    return read_json_object(Path(gguf).parent / REPORT_FILE)


def exports_of_run(workspace: str | Path, run_id: str) -> list[dict[str, Any]]:
    """The reports of a run's export jobs, oldest first (failed ones too: look at "ok")."""
    out = []
    for status in jobs.list_jobs(workspace):
        if status.kind != "export":
            continue
        report = read_report(status.dir)
        if report and report.get("run") == run_id:
            out.append({**report, "state": status.state, "job_dir": str(status.dir)})
    return out
