"""The index of every earlier result of a session, newest first: eval jobs (their scores.json,
through evaluators.evaluate.reader), the summaries kept under the session's evaluations (when the
job folder is gone) and experiments' result.json.

It sits above both the evaluate stage and the experiments (it lists the products of each), so
neither imports the other to list results. The Evaluate pane's History tab shows it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.evaluate.reader import SCORES_FILE
from evaluators.experiments.state import EXPERIMENTS_DIR, RESULT_FILE
from sessions.model import Session
from supervisor import jobs


@dataclass
class ResultEntry:
    """One earlier result, from wherever it lives."""

    key: str  # "job:<id>", "exp:<id>" or "spec:<eval id>:<n>"
    title: str
    kind: str
    when: float
    state: str
    path: Path | None = None  # scores.json or result.json
    summary: dict[str, Any] = field(default_factory=dict)

    def load(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


def _when(text: str) -> float:
    try:
        return time.mktime(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        return 0.0


def list_results(session: Session, workspace: Path) -> list[ResultEntry]:
    """Every earlier result, newest first: eval jobs, summaries in the session, experiments."""
    entries: dict[str, ResultEntry] = {}
    eval_of_job: dict[str, str] = {}
    for spec in session.evals:
        for r in spec.extra.get("results") or []:
            if isinstance(r, dict) and r.get("job"):
                eval_of_job[str(r["job"])] = spec.id
    if Path(workspace).is_dir():
        for status in jobs.list_jobs(workspace):
            if status.kind != "eval":
                continue
            scores = status.dir / SCORES_FILE
            title = eval_of_job.get(status.id, "")
            kind = ""
            if scores.is_file():
                try:
                    head = json.loads(scores.read_text(encoding="utf-8"))
                    title, kind = title or str(head.get("eval") or ""), str(head.get("kind") or "")
                    partial = bool(head.get("partial"))
                except (OSError, json.JSONDecodeError):
                    partial = True
            else:
                partial = False
            state = status.state + (" (partial)" if partial and status.state == "finished" else "")
            entries[f"job:{status.id}"] = ResultEntry(
                f"job:{status.id}",
                title or status.id,
                kind,
                status.ended or status.created or 0.0,
                state,
                scores if scores.is_file() else None,
            )
        for result in sorted((Path(workspace) / EXPERIMENTS_DIR).glob(f"*/{RESULT_FILE}")):
            try:
                head = json.loads(result.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            entries[f"exp:{result.parent.name}"] = ResultEntry(
                f"exp:{result.parent.name}",
                result.parent.name,
                str(head.get("study") or "experiment"),
                _when(str(head.get("finished") or "")),
                "partial" if head.get("partial") else "finished",
                result,
            )
    for spec in session.evals:
        for n, r in enumerate(spec.extra.get("results") or []):
            if not isinstance(r, dict) or f"job:{r.get('job')}" in entries:
                continue
            entries[f"spec:{spec.id}:{n}"] = ResultEntry(
                f"spec:{spec.id}:{n}",
                spec.id,
                spec.kind,
                _when(str(r.get("finished") or "")),
                "summary" + (" (partial)" if r.get("partial") else ""),
                None,
                dict(r.get("summary") or {}),
            )
    return sorted(entries.values(), key=lambda e: e.when, reverse=True)
