"""Result tables as rich Tables, built from a job's scores.json (so the CLI, the Evaluate pane
and the demo show the same thing). rich is a plain rendering library, not the TUI.

- reference: the prior work's columns (BLEU, ROUGE-L, BERTScore P/R/F1, perplexity) plus hits@1
  and F1, one row per model;
- traits: knowledge rate and expression rate per trait side by side, with intervals, small bars
  and the flag column that makes "knows but rarely shows" visible at a glance;
- judge / tailoring: win / tie / loss against the baseline, with intervals, unparseable counts
  and the judge's position consistency;
- perplexity_matrix: models as rows, held-out data of each format as columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from evaluators.probes import (
    FLAG_CONTRADICTS,
    FLAG_KNOWS_NOT_SHOWN,
    FLAG_NEITHER,
    FLAG_SHOWN_NOT_KNOWN,
    KNOWS_AT,
    SHOWN_AT,
)

BAR_WIDTH = 10


def bar(rate: float | None, width: int = BAR_WIDTH) -> str:
    """A text bar for a rate in [0, 1], in eighths of a cell."""
    if rate is None:
        return " " * width
    eighths = round(max(0.0, min(1.0, rate)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "–"


def _rate(d: Mapping[str, Any] | None, with_bar: bool = False) -> Text:
    if not d or not d.get("n"):
        return Text("–", style="dim")
    text = Text()
    if with_bar:
        text.append(bar(d["rate"]), style="cyan")
        text.append(" ")
    text.append(f"{d['rate']:.0%}", style="bold")
    text.append(f" [{d['low']:.0%}–{d['high']:.0%}] {d['k']}/{d['n']}", style="dim")
    return text


REFERENCE_METRICS = (  # (row label, how to read it from a row, format)
    ("BLEU", lambda r: r.get("bleu"), "{:.2f}"),
    ("ROUGE-L", lambda r: r.get("rouge_l"), "{:.4f}"),
    ("BERTScore P", lambda r: (r.get("bertscore") or {}).get("P"), "{:.4f}"),
    ("BERTScore R", lambda r: (r.get("bertscore") or {}).get("R"), "{:.4f}"),
    ("BERTScore F1", lambda r: (r.get("bertscore") or {}).get("F1"), "{:.4f}"),
    ("Perplexity", lambda r: r.get("perplexity"), "{:.2f}"),
    ("hits@1", lambda r: r.get("hits@1"), "{:.1%}"),
    ("F1", lambda r: r.get("f1"), "{:.4f}"),
    ("n", lambda r: r.get("n", 0), "{}"),
)


def reference_table(scores: Mapping[str, Any]) -> Table:
    """The prior work's metrics as rows and the models as columns: nine metrics side by side never
    fitted 80 columns (numbers were cut), a model per column does for any sensible count of models."""
    rows = list(scores.get("rows", []))
    table = Table(
        title=f"Reference metrics · {scores.get('eval', '')}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    table.add_column("Metric", no_wrap=True)
    for row in rows:
        table.add_column(row["model"], justify="right", overflow="fold")
    bert_model = ""
    hits = ""
    errors = []
    for row in rows:
        bert_model = bert_model or row.get("bertscore_model", "")
        if row.get("hits") and not hits:
            h = row["hits"]
            hits = f"hits@1: true reply among {h['candidates']} candidates, ranked by {h['ranked_by']}"
        if row.get("error"):
            errors.append(f"{row['model']}: {row['error']}")
    for label, get, fmt in REFERENCE_METRICS:
        table.add_row(
            label, *("–" if r.get("error") else _num(get(r), fmt) if label != "n" else str(get(r)) for r in rows)
        )
    notes = ["BLEU: sacrebleu corpus (13a)", "ROUGE-L: rouge-score F, no stemming", "F1: unigram, ParlAI normalisation"]
    if bert_model:
        notes.append(f"BERTScore: {bert_model}, not rescaled")
    if hits:
        notes.append(hits)
    table.caption = "; ".join(notes) + "".join(f"\n{e}" for e in errors)
    table.caption_justify = "left"
    return table


_FLAG_STYLES = {
    FLAG_KNOWS_NOT_SHOWN: "bold black on yellow",
    FLAG_SHOWN_NOT_KNOWN: "yellow",
    FLAG_NEITHER: "red",
    FLAG_CONTRADICTS: "bold red",
}


def _rate_cell(d: Mapping[str, Any] | None, width: int = 4) -> Text:
    """'█████▍ 67% 21–94 2/3': bar, rate, Wilson interval, counts; narrow enough for 80 columns."""
    if not d or not d.get("n"):
        return Text("–", style="dim")
    text = Text(bar(d["rate"], width), style="cyan")
    text.append(f" {d['rate']:>4.0%}", style="bold")
    text.append(f" {d['low'] * 100:.0f}–{d['high'] * 100:.0f} {d['k']}/{d['n']}", style="dim")
    return text


def traits_tables(scores: Mapping[str, Any]) -> list[Table]:
    """One table per model: knowledge and expression side by side, per trait, with the flag."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in scores.get("rows", []):
        by_model.setdefault(row["model"], []).append(row)
    tables = []
    for model, rows in by_model.items():
        table = Table(
            title=f"Knows vs shows · {model} · persona {scores.get('persona', '')}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        # Markers and the fallback never say "contradicted": the column only when it can be filled.
        contra_col = any(not str(sc).startswith(("markers", "fallback")) for r in rows for sc in r.get("scorers") or [])
        table.add_column("Trait", overflow="fold", min_width=10, max_width=20)
        table.add_column("Knows", no_wrap=True)
        table.add_column("Shows", no_wrap=True)
        if contra_col:
            table.add_column("Contra", justify="right", no_wrap=True)
        table.add_column("Flag", overflow="fold")
        scorers: set[str] = set()
        unscored = 0
        for row in rows:
            contra = row.get("contradicted") or {}
            scorers.update(row.get("scorers") or [])
            unscored += int(row.get("unscored") or 0)
            cells = [row["trait"], _rate_cell(row.get("knowledge")), _rate_cell(row.get("expression"))]
            if contra_col:
                cells.append(f"{contra.get('k', 0)}/{contra.get('n', 0)}" if contra.get("n") else "–")
            table.add_row(*cells, Text(row["flag"], style=_FLAG_STYLES.get(row["flag"], "green")))
        by = scores.get("knowledge_by", "total")
        table.caption = (
            f"Knows: log P(affirm) > log P(deny) ({'per-token mean' if by == 'mean' else 'summed'} over the "
            "answer), no judge. Shows: replies "
            f"labelled expressed by {', '.join(sorted(scorers)) or scores.get('labeller') or '–'}"
            + (f"; {unscored} unparseable, not counted" if unscored else "")
            + ". Rate, Wilson 95% interval (%), k/n. Flag: fixed bars, not the base (knows on "
            f"≥ {KNOWS_AT:.0%} of probes, shows in ≥ {SHOWN_AT:.0%} of replies); what training changed is "
            "in the run-against-base tables."
        )
        table.caption_justify = "left"
        tables.append(table)
    return tables


def _kn(d: Mapping[str, Any] | None) -> str:
    """'12/16 75%': counts first, so a narrow column never loses them."""
    if not d or not d.get("n"):
        return "–"
    return f"{d['k']}/{d['n']} {d['rate']:.0%}"


def _diff(row: Mapping[str, Any]) -> str:
    """'+25 [-6,+52]': the difference in points with its 95% interval."""
    if row.get("diff") is None:
        return "–"
    lo, hi = row.get("interval") or (None, None)
    text = f"{row['diff'] * 100:+.0f}"
    if lo is not None and hi is not None:
        text += f" [{lo * 100:+.0f},{hi * 100:+.0f}]"
    return text


def _p(p: Any) -> str:
    if not isinstance(p, (int, float)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


_VERDICT_STYLES = {"up": "bold green", "down": "bold red", "undecided": "yellow"}


def _verdict_cell(row: Mapping[str, Any]) -> Text:
    return Text(str(row.get("verdict", "–")), style=_VERDICT_STYLES.get(str(row.get("verdict")), ""))


def _compare_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Trait", overflow="fold", min_width=8, max_width=18)
    for col in ("Run", "Base", "Diff [95% CI]"):
        table.add_column(col, justify="right", no_wrap=True)
    return table


def comparison_tables(scores: Mapping[str, Any]) -> list[Table]:
    """Run against base: knowledge (paired, McNemar), expression (Fisher, Holm), the controls.

    Every number column is no_wrap and the text columns fold, so an 80-column terminal or a log
    shows every digit; why a trait cannot be decided is listed under the table, not squeezed in.
    """
    tables = []
    for cmp in scores.get("comparison") or []:
        model, base = cmp["model"], cmp["base"]
        know = cmp.get("knowledge")
        if know:
            t = _compare_table(f"Knowledge · {model} vs {base} (same probes)")
            t.add_column("p", justify="right", no_wrap=True)
            t.add_column("Verdict", overflow="fold")
            why = []
            for row in [know["overall"], *know["traits"]]:
                t.add_row(
                    Text(row["trait"], style="bold" if row is know["overall"] else ""),
                    _kn(row["run"]),
                    _kn(row["base"]),
                    _diff(row),
                    _p(row.get("p")),
                    _verdict_cell(row),
                )
                if row.get("why"):
                    why.append(f"{row['trait']}: {row['why']}")
            by = scores.get("knowledge_by", "mean")
            t.caption = "\n".join(
                [
                    f"Knows: log P(affirm) > log P(deny), {'per-token mean' if by == 'mean' else 'summed'} over the "
                    "answer. Diff: run − base in points, Newcombe 95% CI (paired). p: exact McNemar.",
                    *(f"undecided · {w}" for w in why),
                ]
            )
            t.caption_justify = "left"
            tables.append(t)
        expr = cmp.get("expression")
        if expr:
            scorer = scores.get("headline_scorer") or scores.get("labeller") or "–"
            t = _compare_table(f"Expression · {model} vs {base} · headline scorer: {scorer}")
            t.add_column("p", justify="right", no_wrap=True)
            t.add_column("Holm", justify="right", no_wrap=True)
            t.add_column("Verdict", overflow="fold")
            why = []
            for row in expr["traits"]:
                t.add_row(
                    row["trait"],
                    _kn(row["run"]),
                    _kn(row["base"]),
                    _diff(row),
                    _p(row.get("p")),
                    _p(row.get("p_holm")),
                    _verdict_cell(row),
                )
                if row.get("why"):
                    why.append(f"{row['trait']}: {row['why']}")
            ups = sum(r.get("verdict") == "up" for r in expr["traits"])
            t.caption = "\n".join(
                [
                    f"Shows: replies labelled expressed by {scores.get('labeller') or scorer} (the labeller fixed in "
                    "the spec). Diff: Newcombe 95% CI. p: Fisher's exact; Holm: adjusted across traits. "
                    f"Up after Holm: {ups} of {len(expr['traits'])} traits.",
                    *(f"undecided · {w}" for w in why),
                ]
            )
            t.caption_justify = "left"
            tables.append(t)
        ctrl = cmp.get("controls")
        if ctrl:
            t = Table(title=f"Controls · {model} vs {base}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            t.add_column("Control", overflow="fold", max_width=18)
            t.add_column("Run", justify="right", no_wrap=True)
            t.add_column("Base", justify="right", no_wrap=True)
            t.add_column("Diff", justify="right", no_wrap=True)
            t.add_column("Bound", justify="right", no_wrap=True)
            t.add_column("Result", no_wrap=True)
            rules = []
            for c in ctrl:
                passed = c.get("passed")
                result = Text(
                    "pass" if passed else "FAIL" if passed is not None else "not run",
                    style="bold green" if passed else "bold red" if passed is not None else "yellow",
                )
                if c["control"] == "general ability" and passed is not None:
                    cells = [f"{c['run_ppl']:.2f}", f"{c['base_ppl']:.2f}", f"×{c['ratio']:.2f}", f"≤ ×{c['bound']:g}"]
                elif passed is not None:
                    # Results stored before the unrelated persona's rule became one-sided keep
                    # the two-sided bound they were judged by (their rule says so).
                    two_sided = "|run − base|" in str(c.get("rule", ""))
                    bound = f"±{c['margin'] * 100:.0f}" if two_sided else f"≤ +{c['margin'] * 100:.0f}"
                    cells = [_kn(c["run"]), _kn(c["base"]), _diff(c), bound]
                else:
                    cells = ["–"] * 4
                t.add_row(c["control"], *cells, result)
                rules.append(c.get("rule") or f"{c['control']}: {c.get('why', '')}")
            t.caption = "\n".join(rules)
            t.caption_justify = "left"
            tables.append(t)
    return tables


def _judge_rate(d: Mapping[str, Any] | None, bold: bool = False) -> Text:
    """'84% 81–86 1003/1200': rate, Wilson interval in points, counts; words that wrap whole."""
    if not d or not d.get("n"):
        return Text("–", style="dim")
    text = Text(f"{d['rate']:.0%}", style="bold" if bold else "")
    text.append(f" {d['low'] * 100:.0f}–{d['high'] * 100:.0f}\n{d['k']}/{d['n']}", style="dim")
    return text


def judge_table(scores: Mapping[str, Any]) -> Table:
    kind = scores.get("kind", "judge")
    title = "Persona tailoring" if kind == "tailoring" else "Pairwise judge"
    table = Table(
        title=f"{title} · {scores.get('judge', '')} · {scores.get('eval', '')}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    # Names fold and rates wrap at their spaces, so the ten columns fit 80 and no number is cut.
    table.add_column("Model", overflow="fold", min_width=6, max_width=20)
    table.add_column("vs", overflow="fold", min_width=4, max_width=14)
    table.add_column("Criterion", overflow="fold", min_width=6)
    for col in ("Win", "Tie", "Loss"):
        table.add_column(col)
    table.add_column("n", justify="right")
    table.add_column("Not\nread", justify="right")
    table.add_column("Orders\nagree", justify="right")
    for row in scores.get("pairs", []):
        criterion = row["criterion"] + (f" ({row.get('group') or 'all'})" if kind == "tailoring" else "")
        cons = row.get("consistency") or {}
        table.add_row(
            row["model"],
            row["baseline"],
            criterion,
            _judge_rate(row["win"], bold=True),
            _judge_rate(row["tie"]),
            _judge_rate(row["loss"]),
            str(row.get("n", 0)),
            Text(str(row.get("unparseable", 0)), style="red" if row.get("unparseable") else ""),
            f"{cons['rate']:.0%}" if cons.get("n") else "–",
        )
    table.caption = (
        "Each pair judged in both orders; win/loss only when the orders' verdicts sum in that "
        "direction. Rate, Wilson 95% interval (%), k/n. Not read: verdicts that could not be parsed. "
        "Orders agree: pairs whose two orders gave the same verdict."
        + (" Rejected-persona prompts are the harder test." if kind == "tailoring" else "")
    )
    table.caption_justify = "left"
    return table


def matrix_table(scores: Mapping[str, Any]) -> Table:
    data = list(scores.get("data", []))
    table = Table(title=f"Cross-format perplexity · {scores.get('eval', '')}", title_justify="left")
    table.add_column("Model")
    for d in data:
        table.add_column(d, justify="right")
    for row in scores.get("rows", []):
        values = row.get("values", {})
        best = {
            d: min((r["values"][d] for r in scores["rows"] if d in r.get("values", {})), default=None) for d in data
        }
        cells = []
        for d in data:
            v = values.get(d)
            cells.append(Text(_num(v), style="bold green" if v is not None and v == best[d] else ""))
        table.add_row(row["model"], *cells)
    table.caption = "Token-weighted perplexity of held-out text; lower is better (best per column in green)."
    table.caption_justify = "left"
    return table


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


_HAS_DIGIT = re.compile(r"\d")


def keep_numbers_whole(table: Table) -> Table:
    """Never let a column that holds numbers wrap or be cut: rich narrows a too-wide table by
    shrinking its wrapping columns first (names that fold, notes that wrap), so an 80-column
    terminal or a log shows every digit as long as the number columns fit together — the tables
    here are laid out for that, and tests/test_demo_summary.py checks each at 80 columns. A column
    that folds (a model's name) is left to fold."""
    if table.box in (box.SIMPLE_HEAD, box.SIMPLE):  # blank edges and double gaps: columns to spare
        table.show_edge = False
        table.collapse_padding = True
    for col in table.columns:
        if col.overflow == "fold":
            continue
        if any(_HAS_DIGIT.search(_plain(cell)) for cell in col._cells):
            col.no_wrap = True
    return table


def tables_for(scores: Mapping[str, Any]) -> list[Table]:
    return [keep_numbers_whole(t) for t in _tables_for(scores)]


def _tables_for(scores: Mapping[str, Any]) -> list[Table]:
    kind = scores.get("kind")
    if kind == "reference":
        return [reference_table(scores)]
    if kind == "traits":
        return traits_tables(scores) + comparison_tables(scores)
    if kind in ("judge", "tailoring"):
        return [judge_table(scores)]
    if kind == "perplexity_matrix":
        return [matrix_table(scores)]
    if kind == "drift":
        from evaluators.drift import drift_tables

        return drift_tables(scores)
    raise ValueError(f"scores of kind {kind!r} have no table; is this an eval job's scores.json?")


def problems_text(scores: Mapping[str, Any]) -> Text:
    """The partial-result warning and every problem and note, for under the tables."""
    text = Text()
    if scores.get("partial"):
        text.append("PARTIAL RESULT: ", style="bold yellow")
        text.append("something was left out; see below.\n")
    for p in scores.get("problems", []):
        text.append("! ", style="yellow")
        text.append(p + "\n")
    for n in scores.get("notes", []):
        text.append("· ", style="dim")
        text.append(n + "\n", style="dim")
    stats = scores.get("judge_stats")
    if stats:
        text.append(
            f"· judge: {stats.get('calls', 0)} calls, {stats.get('off_format', 0)} off-format, "
            f"{stats.get('retried_ok', 0)} fixed by the retry, {stats.get('unparseable', 0)} unparseable\n",
            style="dim",
        )
    return text


def _kappa_word(kappa: float | None) -> str:
    """Landis & Koch's reading of kappa, so a number comes with what it is usually taken to mean."""
    if kappa is None:
        return "undefined"
    if kappa <= 0:
        return "chance"
    for bound, word in ((0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa <= bound:
            return word
    return "near perfect"


def agreement_tables(report: Mapping[str, Any]) -> list[Table]:
    """Judge vs people per trait (kappa, raw agreement, confusion) and metrics vs people (rho)."""
    short = {"expressed": "e", "not_shown": "n", "contradicted": "c"}
    labels = [short.get(lab, lab) for lab in report.get("labels", [])]
    who = ", ".join(report.get("annotators", [])) or "nobody yet"
    traits = Table(
        title=f"Machine labels vs people, per trait · annotators: {who}", title_justify="left", box=box.SIMPLE_HEAD
    )
    confusion_col = "machine×human " + "/".join(labels)
    for col in ("Trait", "pairs", "κ", "agree", confusion_col, "scorer"):
        traits.add_column(
            col,
            justify="right" if col in ("pairs", "agree") else "left",
            no_wrap=col == confusion_col,
            overflow="fold" if col in ("Trait", "scorer") else "ellipsis",
        )
    unscored = 0
    for t in report.get("traits", []):
        conf = " ".join("/".join(str(c) for c in row) for row in t.get("confusion", []))  # 12/3, never 123
        kappa = t.get("kappa")
        reading = _kappa_word(kappa) if t["n"] else "no pairs"
        traits.add_row(
            t["trait"],
            str(t["n"]),
            Text.assemble((_num(kappa), "bold"), _ci(t.get("kappa_ci")), f"\n{reading}"),
            _num(t.get("agreement"), "{:.0%}"),
            conf,
            ", ".join(t.get("scorers", [])) or "–",
        )
        unscored += int(t.get("unscored", 0))
    notes = [f"confusion: one group per machine label ({'/'.join(labels)}), counts by the person's label."]
    if unscored:
        notes.append(f"{unscored} person label(s) left out: the machine's label was unparseable.")
    if not report.get("traits"):
        notes = [
            "No trait has both a machine label and a person's label yet: label expression replies "
            "of a traits evaluation in the Annotate tab."
        ]
    traits.caption = "\n".join(notes)
    traits.caption_justify = "left"
    metrics = Table(
        title=f"Automatic metrics vs people's consistency ratings ({report.get('rated', 0)} outputs rated)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in ("Metric", "rated outputs", "Spearman ρ"):
        metrics.add_column(col, justify="left" if col == "Metric" else "right")
    for m in report.get("metrics", []):
        rho = m.get("rho")
        metrics.add_row(
            m["metric"],
            str(m["n"]),
            Text.assemble((_num(rho), "bold" if rho is not None else "dim"), _ci(m.get("rho_ci"))),
        )
    metrics.caption = (
        "ρ near 0: the metric does not track what people see; undefined (–) when either "
        "side is constant or fewer than two outputs are rated. [ ]: bootstrap 95% interval."
    )
    metrics.caption_justify = "left"
    return [keep_numbers_whole(t) for t in (traits, metrics, *people_tables(report.get("people") or {}))]


def _ci(ci: Any) -> Text:
    """' [0.12, 0.80]' for a bootstrap interval, '' without one."""
    if not ci:
        return Text("")
    return Text(f" [{ci[0]:.2f}, {ci[1]:.2f}]", style="dim")


def people_tables(people: Mapping[str, Any]) -> list[Any]:
    """People vs people: Krippendorff's alpha per trait and on the consistency rating, Cohen's kappa
    for exactly two annotators, each with its bootstrap interval; notes when too little overlaps."""
    if not people:
        return []
    who = ", ".join(people.get("annotators", [])) or "nobody yet"
    two = len(people.get("annotators", [])) == 2
    table = Table(
        title=f"People vs people · annotators: {who}", title_justify="left", box=box.SIMPLE_HEAD, min_width=72
    )
    cols = ["Labels", "items", "Krippendorff α"] + (["Cohen κ"] if two else [])
    for col in cols:
        table.add_column(
            col,
            justify="right" if col == "items" else "left",
            no_wrap=col != "Labels",
            overflow="fold" if col == "Labels" else "ellipsis",
        )

    def cells(row: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = [
            str(row.get("items", 0)),
            Text.assemble((_num(row.get("alpha")), "bold"), _ci(row.get("alpha_ci"))),
        ]
        if two:
            out.append(
                Text.assemble(
                    (_num(row.get("kappa")), "bold"), _ci(row.get("kappa_ci")), f"\n{_kappa_word(row.get('kappa'))}"
                )
            )
        return out

    for row in people.get("traits", []):
        table.add_row(f"trait {row['trait']} (nominal)", *cells(row))
    if people.get("consistency"):
        table.add_row("consistency 1-5 (ordinal)", *cells(people["consistency"]))
    boot = people.get("bootstrap") or {}
    notes = list(people.get("notes", []))
    notes.append(
        f"Items labelled by at least two people; [ ]: bootstrap 95% interval ({boot.get('reps', '?')} "
        f"resamples of the items, seed {boot.get('seed', '?')}); – when undefined."
    )
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return [table]
