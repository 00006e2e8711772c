"""Where the studies' public data is: `--data DIR`, the study's environment variable, or the Hub
dataset pulled into the HF cache by `persona-tui data pull spc|tailoring|persona-inference`.

No path of any particular machine is named here. Synthetic-Persona-Chat is used as its CSV,
straight from the snapshot. The persona-tailoring splits (one folder per domain, e.g. `Mnemonic/`,
each split a parquet, JSONL or CSV file named after it) are written once as the JSONL files the
tailoring study reads, into `<persona-tui cache>/studies/tailoring-<commit>/`, so a rerun finds them
without converting again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from engines.hub import STUDY_DATASETS, cached_snapshot
from engines.models import cache_root
from evaluators.experiments.state import ExperimentError

SPC_CSV = "Synthetic-Persona-Chat_valid.csv"
TAILORING_DOMAIN = "Mnemonic"
# file the tailoring study reads -> the split's name in the Hub dataset
TAILORING_SPLITS = {
    "persona-tailoring_sft_train.jsonl": "sft_train",
    "persona-tailoring_dpo_train.jsonl": "dpo_train",
    "persona-tailoring_sft_val.jsonl": "sft_val",
    "persona-tailoring_test.jsonl": "test",
    "persona-tailoring_fewshot.jsonl": "fewshot",
}
READABLE = (".parquet", ".jsonl", ".json", ".csv")


def spc_csv(given: str = "", env: str = "") -> Path:
    """The SPC validation CSV: `given` (a folder or the CSV), else $`env`, else the pulled dataset."""
    explicit = given or (os.environ.get(env) if env else "")
    if explicit:
        folder = Path(explicit).expanduser()
        return (folder / SPC_CSV if folder.is_dir() or folder.suffix != ".csv" else folder).resolve()
    snap = cached_snapshot(STUDY_DATASETS["spc"], "dataset")
    found = sorted(snap.rglob(SPC_CSV)) if snap else []
    if found:
        return found[0]
    raise ExperimentError(
        f"the Synthetic-Persona-Chat data is not on this machine; run 'persona-tui data pull spc' "
        f"(or pass --data DIR, the folder holding {SPC_CSV})."
    )


def _split_file(snapshot: Path, domain: str, split: str) -> Path | None:
    pattern = re.compile(rf"^{re.escape(split)}([-_.]|$)", re.I)
    hits = []
    for p in snapshot.rglob("*"):
        rel = p.relative_to(snapshot)
        in_domain = any(part.lower() == domain.lower() for part in rel.parts[:-1]) or domain.lower() in p.name.lower()
        name = p.name.lower().replace(f"{domain.lower()}_", "").replace(f"{domain.lower()}-", "")
        if p.is_file() and p.suffix in READABLE and in_domain and pattern.match(name):
            hits.append(p)
    return sorted(hits)[0] if hits else None


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tailoring_folder(given: str = "", env: str = "") -> Path:
    """A folder with the tailoring study's JSONL files: `given`, else $`env`, else written once
    from the pulled `nbalepur/persona-tailoring` dataset (its Mnemonic domain)."""
    explicit = given or (os.environ.get(env) if env else "")
    if explicit:
        return Path(explicit).expanduser().resolve()
    snap = cached_snapshot(STUDY_DATASETS["tailoring"], "dataset")
    if snap is None:
        raise ExperimentError(
            "the persona-tailoring data is not on this machine; run 'persona-tui data pull tailoring' "
            "(or pass --data DIR, the folder holding the persona-tailoring JSONL files)."
        )
    out = cache_root() / "studies" / f"tailoring-{snap.name[:12]}"
    if all((out / name).is_file() for name in TAILORING_SPLITS):
        return out
    sources = {name: _split_file(snap, TAILORING_DOMAIN, split) for name, split in TAILORING_SPLITS.items()}
    missing = [TAILORING_SPLITS[n] for n, p in sources.items() if p is None]
    if missing:
        raise ExperimentError(
            f"the pulled persona-tailoring dataset in {snap} has no {TAILORING_DOMAIN} split "
            f"{', '.join(missing)}; pass --data DIR with the study's JSONL files instead."
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        tmp = out / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for row in _rows(src):  # type: ignore[arg-type]
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, out / name)
    return out
