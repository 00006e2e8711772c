"""The one reader of eval jobs' products: `scores.json` (the result tables, see evaluators.tables),
`outputs.jsonl` (every reply, what annotations point at), and the short summary the session keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCORES_FILE = "scores.json"
OUTPUTS_FILE = "outputs.jsonl"


def output_id(job_id: str, index: int) -> str:
    """An output's stable id, what annotations point at: "<job-id>:<index>"."""
    return f"{job_id}:{index}"


def read_outputs(job_dir: str | Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """An eval job's outputs.jsonl, each line with its `index` and `output` id set.

    Without `problems`: strict — a missing file or a damaged line raises ValueError naming it.
    With a list: tolerant, as a viewer of a running job must be — a half-written last line is
    skipped, a damaged line is named in `problems` and left out, an unreadable file is named.
    """
    from sessions.jsonl import iter_jsonl

    job_dir = Path(job_dir)
    path = job_dir / OUTPUTS_FILE
    if problems is None:
        if not path.is_file():
            raise ValueError(f"{job_dir} has no {OUTPUTS_FILE}; run the evaluation first.")
        rows = list(iter_jsonl(path, fix="the file is damaged; run the evaluation again"))
    else:

        def bad(n: int, reason: str) -> None:
            problems.append(f"{path} line {n} {reason.split(' (')[0]}; that output is left out.")

        try:  # a last line without its newline is still being written by a running job
            rows = list(iter_jsonl(path, bad=bad, partial_tail=True, errors="replace"))
        except OSError as e:
            problems.append(f"{path} could not be read ({e.strerror or e}); its outputs are left out.")
            return []
    out = []
    for n, row in rows:
        row.setdefault("index", n - 1)
        row.setdefault("output", output_id(job_dir.name, row["index"]))
        out.append(row)
    return out


def jobs_with_outputs(workspace: str | Path) -> list[Path]:
    """The job folders of a workspace that hold outputs (eval jobs, and any other that writes them), by name."""
    from supervisor import jobs

    root = jobs.jobs_root(workspace)
    return sorted(p for p in root.iterdir() if (p / OUTPUTS_FILE).is_file()) if root.is_dir() else []


def load_scores(job_dir: str | Path) -> dict[str, Any]:
    path = Path(job_dir) / SCORES_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{Path(job_dir)} has no {SCORES_FILE} yet; the evaluation has not scored anything.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None


def summary(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers per model worth keeping in the session file (no nulls: TOML has none)."""
    out: dict[str, Any] = {}
    kind = scores.get("kind")
    if kind == "reference":
        for row in scores.get("rows", []):
            vals = {
                "bleu": row.get("bleu"),
                "rouge_l": row.get("rouge_l"),
                "bertscore_f1": (row.get("bertscore") or {}).get("F1"),
                "perplexity": row.get("perplexity"),
                "hits_at_1": row.get("hits@1"),
                "f1": row.get("f1"),
            }
            out[row["model"]] = {k: round(v, 4) for k, v in vals.items() if isinstance(v, (int, float))}
    elif kind == "traits":
        for row in scores.get("rows", []):
            cell = {}
            for name in ("knowledge", "expression"):
                rate = row[name].get("rate")
                if rate is not None:
                    cell[name] = round(rate, 4)
            cell["flag"] = row["flag"]
            out.setdefault(row["model"], {})[row["trait"]] = cell
        for cmp in scores.get("comparison") or []:
            vs: dict[str, Any] = {"base": cmp["base"]}
            know = (cmp.get("knowledge") or {}).get("overall") or {}
            if know.get("n"):
                vs.update(knowledge_diff=round(know["diff"], 4), knowledge_p=round(know["p"], 6))
            if cmp.get("expression"):
                vs["traits_up"] = sum(r.get("verdict") == "up" for r in cmp["expression"]["traits"])
            if cmp.get("controls"):
                vs["controls_passed"] = sum(c.get("passed") is True for c in cmp["controls"])
                vs["controls"] = len(cmp["controls"])
            out.setdefault(cmp["model"], {})["vs_base"] = vs
    elif kind in ("judge", "tailoring"):
        for row in scores.get("pairs", []):
            rate = row["win"].get("rate")
            key = row["criterion"] + (f"_{row['group']}" if row.get("group") else "")
            if rate is not None:
                out.setdefault(row["model"], {})[key] = round(rate, 4)
    elif kind == "perplexity_matrix":
        for row in scores.get("rows", []):
            out[row["model"]] = {k: round(v, 4) for k, v in row["values"].items() if isinstance(v, (int, float))}
    elif kind == "drift":
        from evaluators.drift import summary as drift_summary

        out = drift_summary(scores)
    return out


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def drop_nulls(value: Any) -> Any:
    """The value without None, NaN or infinite entries (TOML has no null)."""
    if isinstance(value, dict):
        return {str(k): drop_nulls(v) for k, v in value.items() if not _absent(v)}
    if isinstance(value, (list, tuple)):
        return [drop_nulls(v) for v in value if not _absent(v)]
    return value
