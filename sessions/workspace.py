"""Where a session's files live, and which ids may become file names.

A session `my.toml` owns the folder `my/` beside it: `datasets/<id>.jsonl`, `jobs/<id>/`. Ids
from the TOML become file names there, so every path function refuses an id that could escape
the folder or that some file system would treat specially.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

MAX_ID_LENGTH = 64
ID_RULE = "use letters, digits, '-', '_' and '.' (not first), at most 64 characters"

_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Names Windows reserves whatever the extension ("con.txt" is the console too).
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}


class UnsafeIdError(ValueError):
    """An id that cannot be used as a file name inside the workspace."""


def id_problem(value: object) -> str | None:
    """Why `value` cannot be used as a file name in the workspace, or None when it can."""
    if not isinstance(value, str):
        return "is not text"
    if value == "":
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if value in (".", ".."):
        return f"is the reserved name {value!r}"
    if value.startswith("."):
        return "starts with '.'"
    if value.startswith("-"):
        return "starts with '-'"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long (more than {MAX_ID_LENGTH})"
    if value.endswith("."):
        return "ends with '.'"
    if value.split(".", 1)[0].lower() in _RESERVED:
        return "is a reserved device name on Windows"
    if not _ID_RE.fullmatch(value):
        bad = next(c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-")))
        return f"contains {bad!r}"
    return None


def safe_id(value: str, what: str = "id") -> str:
    """Return `value` if it is safe as a file name, else raise UnsafeIdError saying why."""
    problem = id_problem(value)
    if problem:
        raise UnsafeIdError(f"The {what} {value!r} {problem}; {ID_RULE}.")
    return value


def make_id(text: str, taken: Iterable[str] = (), fallback: str = "item", max_words: int = 6) -> str:
    """A safe, readable id derived from `text` ("I love to ski." -> "i-love-to-ski"), unique in `taken`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_text.lower())[:max_words]
    base = "-".join(words)[:40].strip("-") or fallback
    if id_problem(base):
        base = f"{fallback}-{base}"
    taken = set(taken)
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{base}-{n}"
        n += 1
    return candidate


def workspace_for(session_path: str | Path) -> Path:
    """The folder beside a session file that holds its data: `my.toml` -> `my/`."""
    path = Path(session_path)
    if path.suffix.lower() == ".toml":
        return path.with_suffix("")
    return path.with_name(path.name + ".workspace")


def datasets_dir(workspace: str | Path) -> Path:
    return Path(workspace) / "datasets"


def dataset_path(workspace: str | Path, dataset_id: str) -> Path:
    """`<workspace>/datasets/<id>.jsonl`: the training examples of one dataset spec."""
    _check_dataset_id(dataset_id)
    return datasets_dir(workspace) / f"{dataset_id}.jsonl"


def heldout_path(workspace: str | Path, dataset_id: str) -> Path:
    """`<workspace>/datasets/<id>.heldout.jsonl`: the examples kept out of training."""
    _check_dataset_id(dataset_id)
    return datasets_dir(workspace) / f"{dataset_id}.heldout.jsonl"


def jobs_dir(workspace: str | Path) -> Path:
    """`<workspace>/jobs`: one sub-folder per job (see supervisor.jobs)."""
    return Path(workspace) / "jobs"


def job_path(workspace: str | Path, job_id: str) -> Path:
    return jobs_dir(workspace) / safe_id(job_id, "job id")


def _check_dataset_id(dataset_id: str) -> None:
    safe_id(dataset_id, "dataset id")
    if dataset_id.endswith(".heldout"):
        # x.heldout.jsonl is the held-out file of dataset "x".
        raise UnsafeIdError(
            f"The dataset id {dataset_id!r} ends in '.heldout', which names the held-out file of "
            f"another dataset; pick another id."
        )
