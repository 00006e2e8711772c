"""How far the automatic scores agree with people: Cohen's kappa and Spearman's rho.

The judge's (or fallback's) per-trait labels are compared with the labels people gave in the
Annotate pane — the same three labels, so kappa compares like with like — per trait, with the
confusion table behind each kappa. Each automatic metric is compared with people's overall
consistency ratings (1-5) by Spearman's rho. Both are computed here (scipy is not installed):
kappa from the observed and chance agreement, rho as Pearson's r of average ranks.

Outputs are named "<job-id>:<index>", index being the line of the job's outputs.jsonl.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.probes import LABELS


def output_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when chance agreement is total.

    kappa = (p_o - p_e) / (1 - p_e): p_o the share of items they agree on, p_e the agreement
    expected from each rater's label frequencies alone.
    """
    if len(a) != len(b):
        raise ValueError(f"kappa needs the same items from both raters ({len(a)} vs {len(b)} labels).")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if p_e >= 1.0:
        return None  # both raters used one and the same label throughout: kappa is undefined
    return (p_o - p_e) / (1 - p_e)


def confusion(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable]) -> list[list[int]]:
    """Counts with rows = rater a's label, columns = rater b's label, in `labels` order."""
    index = {label: i for i, label in enumerate(labels)}
    table = [[0] * len(labels) for _ in labels]
    for x, y in zip(a, b):
        if x in index and y in index:
            table[index[x]][index[y]] += 1
    return table


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = mean_rank
        i = j + 1
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    if n != len(y):
        raise ValueError(f"correlation needs pairs ({len(x)} vs {len(y)} values).")
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None  # one side is constant: no correlation to speak of
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson's r of average ranks); None for fewer than 2 pairs or a constant side."""
    return pearson(ranks(x), ranks(y))


# ----------------------------------------------------------------------------- from files


def read_outputs(job_dir: str | Path) -> list[dict[str, Any]]:
    """A job's outputs.jsonl, each line with its `output` id added ("<job-id>:<index>")."""
    job_dir = Path(job_dir)
    path = job_dir / "outputs.jsonl"
    from sessions.jsonl import iter_jsonl

    out = []
    if not path.is_file():
        raise ValueError(f"{job_dir} has no outputs.jsonl; run the evaluation first.")
    for n, row in iter_jsonl(path, fix="the file is damaged; run the evaluation again"):
        i = n - 1
        row.setdefault("index", i)
        row.setdefault("output", output_id(job_dir.name, row["index"]))
        out.append(row)
    return out


def machine_trait_labels(outputs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(output id, trait) -> {"label", "scorer"} for every expression output."""
    labels = {}
    for row in outputs:
        if row.get("kind") == "expression" and row.get("trait"):
            labels[(str(row["output"]), str(row["trait"]))] = {
                "label": row.get("label"),
                "scorer": row.get("scorer", ""),
            }
    return labels


@dataclass
class TraitAgreement:
    trait: str
    n: int  # label pairs compared (one per output, trait and annotator)
    kappa: float | None
    agreement: float | None  # raw share of pairs that agree
    confusion: list[list[int]]  # rows: machine label; columns: human label (LABELS order)
    unscored: int = 0  # human labels whose output the machine left unparseable
    scorers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trait": self.trait,
            "n": self.n,
            "kappa": self.kappa,
            "agreement": self.agreement,
            "labels": list(LABELS),
            "confusion": self.confusion,
            "unscored": self.unscored,
            "scorers": self.scorers,
        }


def trait_agreement(
    machine: Mapping[tuple[str, str], Mapping[str, Any]], annotations: Iterable[Any]
) -> dict[str, TraitAgreement]:
    """Cohen's kappa per trait of machine labels against every person's labels of the same output.

    `annotations` are sessions.model.Annotation objects (several annotators each count).
    """
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    unscored: Counter[str] = Counter()
    scorers: dict[str, set[str]] = defaultdict(set)
    for ann in annotations:
        for trait, human in ann.trait_labels.items():
            if human not in LABELS:
                continue
            got = machine.get((ann.output, trait))
            if got is None:
                continue
            if got.get("label") not in LABELS:
                unscored[trait] += 1
                continue
            pairs[trait].append((str(got["label"]), human))
            scorers[trait].add(str(got.get("scorer", "")))
    out = {}
    for trait in sorted(set(pairs) | set(unscored)):
        ps = pairs.get(trait, [])
        a = [m for m, _ in ps]
        b = [h for _, h in ps]
        out[trait] = TraitAgreement(
            trait=trait,
            n=len(ps),
            kappa=cohen_kappa(a, b),
            agreement=(sum(x == y for x, y in ps) / len(ps)) if ps else None,
            confusion=confusion(a, b, LABELS),
            unscored=unscored[trait],
            scorers=sorted(scorers.get(trait, ())),
        )
    return out


def consistency_ratings(annotations: Iterable[Any]) -> dict[str, float]:
    """output id -> mean consistency rating (1-5) over the annotators who rated it."""
    sums: dict[str, list[int]] = defaultdict(list)
    for ann in annotations:
        if 1 <= int(ann.consistency or 0) <= 5:
            sums[ann.output].append(int(ann.consistency))
    return {k: sum(v) / len(v) for k, v in sums.items()}


@dataclass
class MetricAgreement:
    metric: str
    n: int
    rho: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "n": self.n, "rho": self.rho}


def metric_agreement(
    metrics: Mapping[str, Mapping[str, float]], annotations: Iterable[Any]
) -> list[MetricAgreement]:
    """Spearman's rho of each metric against people's consistency ratings.

    `metrics` maps a metric name to {output id: value}; only outputs rated by people count.
    """
    human = consistency_ratings(annotations)
    out = []
    for name, values in metrics.items():
        common = [o for o in values if o in human and values[o] is not None]
        rho = spearman([float(values[o]) for o in common], [human[o] for o in common])
        out.append(MetricAgreement(name, len(common), rho))
    return out


def output_metrics(outputs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """metric name -> {output id: value} from the per-output `metrics` of an eval job's outputs."""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for row in outputs:
        for name, value in (row.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                table[name][str(row["output"])] = float(value)
    return dict(table)


def agreement_report(annotations: Iterable[Any], workspace: str | Path) -> dict[str, Any]:
    """Judge-vs-human kappa per trait and metric-vs-human rho over every eval job on disk.

    The one place the CLI (`persona-tui annotate --agreement`) and the Annotate pane get their
    numbers from. Damaged lines of job outputs are named in `problems` and left out, never guessed.
    """
    annotations = list(annotations)
    jobs_root = Path(workspace) / "jobs"
    outputs: list[dict[str, Any]] = []
    problems: list[str] = []
    if jobs_root.is_dir():
        from evaluators.annotation import read_object_lines

        for job_dir in sorted(p for p in jobs_root.iterdir() if (p / "outputs.jsonl").is_file()):
            # The Annotate queue's reader: a running job's half-written last line is skipped, a bad
            # line is named and left out, and the rest of the job still counts.
            for i, row in read_object_lines(job_dir / "outputs.jsonl", problems):
                row.setdefault("index", i)
                row.setdefault("output", output_id(job_dir.name, row["index"]))
                outputs.append(row)
    traits = trait_agreement(machine_trait_labels(outputs), annotations)
    metrics = metric_agreement(output_metrics(outputs), annotations)
    humans = sorted({a.annotator for a in annotations if a.trait_labels or a.consistency})
    return {
        "annotators": humans,
        "labels": list(LABELS),
        "traits": [t.to_dict() for t in traits.values()],
        "metrics": [m.to_dict() for m in metrics if m.n],
        "rated": len(consistency_ratings(annotations)),
        "problems": problems,
    }
