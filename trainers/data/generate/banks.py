"""The phrase banks the template generator draws from (TOML files in `trainers/banks/`).

They are data, not code, so a person can read, extend or translate them without touching the
generator; each file says what its placeholders mean.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import Any

BANK_NAMES = ("topics", "chat", "first_person", "docs", "names", "paraphrase")


@functools.cache
def load_bank(name: str) -> dict[str, Any]:
    if name not in BANK_NAMES:
        raise ValueError(f"There is no phrase bank {name!r}; the banks are {', '.join(BANK_NAMES)}.")
    path = resources.files("trainers").joinpath("banks", f"{name}.toml")
    with path.open("rb") as f:
        return tomllib.load(f)


def bank_size() -> int:
    """How many phrases all banks hold together (reported in the statistics)."""

    def count(value: Any) -> int:
        if isinstance(value, list):
            return sum(count(v) for v in value)
        if isinstance(value, dict):
            return sum(count(v) for v in value.values())
        return 1 if isinstance(value, str) and value else 0

    return sum(count(load_bank(n)) for n in BANK_NAMES)
