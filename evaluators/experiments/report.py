"""Tables of a study's result.json, by study (the CLI prints them; the Evaluate pane shows them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tables_for_result(result: Mapping[str, Any]) -> list[Any]:
    """The rich tables of a result.json of any study."""
    study = result.get("study")
    if study == "format-comparison":
        from evaluators.experiments.format_comparison import pairs_table, result_table

        return [result_table(result)] + ([pairs_table(result["pairs"])] if result.get("pairs") else [])
    if study == "persona-chat":
        from evaluators.experiments.persona_chat import result_tables

        return result_tables(result)
    if study == "tailoring":
        from evaluators.experiments.tailoring import result_tables

        return result_tables(result)
    raise ValueError(f"a result of study {study!r} has no table; is this an experiment's result.json?")
