"""Recompute what the demo prints from the files it names ("Where each number comes from").

Independent of the code that printed the numbers where it can be: the loss windows are averaged
here by hand from events.jsonl, example counts are lines of the dataset files, and the
knowledge/expression headline is rebuilt from the per-probe rows of outputs.jsonl (the same
statistics functions, fed the raw rows rather than the job's scores.json).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

SECTION = "Where each number comes from"
LINE = re.compile(r"^  (?P<claim>.+)  <- (?P<source>\S+)$")
LOSS = re.compile(
    r"loss (?P<first>\d+\.\d+) -> (?P<last>\d+\.\d+) \(mean of the first/last (?P<w>\d+) of "
    r"(?P<n>\d+) logged steps\)"
)
EVAL = re.compile(r"eval loss (?P<first>\d+\.\d+) -> (?P<last>\d+\.\d+) \(steps (?P<s0>\d+) -> (?P<s1>\d+)\)")
COUNT = re.compile(r"^(?P<ds>[\w-]+): (?P<n>\d+) (?:train|held-out) examples$")
HEADLINE = re.compile(r"^(?P<eval>[\w-]+): (?P<model>[\w.:+-]+): (?P<rest>.+)$")
KNOWLEDGE = re.compile(r"knowledge (?P<rk>\d+)/(?P<n>\d+) vs base (?P<bk>\d+)/\d+(?: \(McNemar p (?P<p>[\d.e-]+)\))?")
EXPRESSION = re.compile(
    r"expression up on (?P<up>\d+)/(?P<traits>\d+) traits after Holm"
    r"(?: \((?P<undecided>\d+) undecided\))?"
)
CONTROLS = re.compile(r"controls (?P<passed>\d+)/(?P<controls>\d+) pass(?: \((?P<not_run>\d+) not run\))?")


def sourced_lines(stdout: str) -> list[tuple[str, Path]]:
    """(claim, file) for each line under the section heading."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if SECTION in line)
    out = []
    for line in lines[start + 1 :]:
        m = LINE.match(line)
        if not m:
            break
        out.append((m["claim"], Path(m["source"])))
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_loss(claim: str, events_file: Path) -> None:
    """The printed window means and eval losses equal those averaged by hand from events.jsonl."""
    events = _rows(events_file)
    resumed = [e["resumed_from"] for e in events if e.get("event") == "train_begin" and e.get("resumed_from")]
    assert not resumed, "this check reads straight runs only"
    steps = [e["loss"] for e in events if e.get("event") == "step" and isinstance(e.get("loss"), (int, float))]
    evals = [
        (e["step"], e["eval_loss"])
        for e in events
        if e.get("event") == "eval" and isinstance(e.get("eval_loss"), (int, float))
    ]
    m = LOSS.search(claim)
    assert m, claim
    n, w = int(m["n"]), int(m["w"])
    assert n == len(steps) and f"{n} steps" in claim
    assert w == min(max(5, math.ceil(n / 10)), n // 2), (w, n)  # 10% of the steps, at least 5, at most half
    assert m["first"] == f"{sum(steps[:w]) / w:.2f}" and m["last"] == f"{sum(steps[-w:]) / w:.2f}", claim
    if len(evals) > 1:
        e = EVAL.search(claim)
        assert e, claim
        assert (e["first"], e["last"]) == (f"{evals[0][1]:.2f}", f"{evals[-1][1]:.2f}")
        assert (int(e["s0"]), int(e["s1"])) == (evals[0][0], evals[-1][0])
    end = [e for e in events if e.get("event") == "train_end"]
    assert f"{(end[-1].get('tokens_per_s') or 0) if end else 0:.0f} tok/s" in claim


def check_headline(claim: str, outputs_file: Path) -> None:
    """Knowledge counts and McNemar p, traits up after Holm and controls passed, from the per-probe
    rows of outputs.jsonl and the settings frozen in the job's spec.toml."""
    import tomllib

    from evaluators import controls
    from evaluators.probes import expression_comparison
    from evaluators.stats import mcnemar_exact

    head = HEADLINE.match(claim)
    assert head, claim
    parts = {
        name: rx.fullmatch(part)
        for part in head["rest"].split(", ")
        for name, rx in (("knowledge", KNOWLEDGE), ("expression", EXPRESSION), ("controls", CONTROLS))
        if rx.fullmatch(part)
    }
    assert len(parts) == len(head["rest"].split(", ")), f"a part of {claim!r} is not checked"
    rows = _rows(outputs_file)
    model = head["model"]
    base = next(r["model"] for r in rows if r.get("model") != model)  # the first model scored is the base
    spec = tomllib.loads((outputs_file.parent / "spec.toml").read_text())  # the frozen persona and settings
    know = {(r["model"], r["trait"], r["probe"]): r["knows"] for r in rows if r.get("kind") == "knowledge"}
    keys = sorted({(t, p) for (mod, t, p) in know if mod == model} & {(t, p) for (mod, t, p) in know if mod == base})
    if (m := parts.get("knowledge")) is not None:
        run_k = sum(know[(model, *k)] for k in keys)
        base_k = sum(know[(base, *k)] for k in keys)
        assert (int(m["rk"]), int(m["bk"]), int(m["n"])) == (run_k, base_k, len(keys)), claim
        b = sum(know[(model, *k)] and not know[(base, *k)] for k in keys)
        c = sum(know[(base, *k)] and not know[(model, *k)] for k in keys)
        if m["p"]:
            assert m["p"] == f"{mcnemar_exact(b, c):.3g}", claim
    else:
        assert not keys, f"{claim!r} leaves out the knowledge that outputs.jsonl holds"
    if (m := parts.get("expression")) is not None:
        expr = [r for r in rows if r.get("kind") == "expression"]
        traits = [t["id"] for t in spec["persona"]["traits"]]
        cmp = expression_comparison(expr, model, base, traits)
        assert int(m["traits"]) == len(traits)
        assert int(m["up"]) == sum(r["verdict"] == "up" for r in cmp["traits"]), claim
        assert int(m["undecided"] or 0) == sum(r["verdict"] == "undecided" for r in cmp["traits"]), claim
    if (m := parts.get("controls")) is not None:
        settings = spec["settings"]
        ppl = {r["model"]: r["metrics"]["perplexity"] for r in rows if r.get("kind") == "control_perplexity"}
        results = [
            controls.unrelated(
                [r for r in rows if r.get("kind") == "control_knowledge"], model, base, settings["unrelated_margin"]
            ),
            controls.over_expression(
                [r for r in rows if r.get("kind") == "control_neutral"], model, base, settings["over_margin"]
            ),
            controls.ability(ppl, model, base, settings["ability_bound"]),
        ]
        assert int(m["controls"]) == len(results)
        assert int(m["passed"]) == sum(r.get("passed") is True for r in results), claim
        assert int(m["not_run"] or 0) == sum(r.get("passed") is None for r in results), claim


def check_demo_numbers(stdout: str) -> list[str]:
    """Check every sourced line the demo printed; the kinds of line checked, for the caller."""
    checked = []
    for claim, source in sourced_lines(stdout):
        assert source.is_file(), f"{claim!r} names {source}, which does not exist"
        if (c := COUNT.match(claim)) is not None:
            assert int(c["n"]) == sum(1 for line in source.read_text().splitlines() if line.strip()), claim
            checked.append("count")
        elif " logged steps" in claim:
            check_loss(claim, source)
            checked.append("loss")
        elif HEADLINE.match(claim) and any(rx.search(claim) for rx in (KNOWLEDGE, EXPRESSION, CONTROLS)):
            check_headline(claim, source)
            checked.append("headline")
        else:
            raise AssertionError(f"no check for the demo's line {claim!r}")
    return checked
