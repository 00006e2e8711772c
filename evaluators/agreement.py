"""How far the automatic scores agree with people, and people with each other.

Machine vs people: Cohen's kappa and Spearman's rho. People vs people: Krippendorff's alpha per
trait (nominal, on the trait labels) and on the 1-5 consistency rating (ordinal), over any number
of annotators and every item labelled by at least two; Cohen's kappa as well when there are
exactly two. Every kappa, alpha and rho comes with a bootstrap 95% interval (items resampled,
fixed seed, so a report reads the same twice), and a note says when too few items overlap to
say much.

The judge's (or fallback's) per-trait labels are compared with the labels people gave in the
Annotate pane — the same three labels, so kappa compares like with like — per trait, with the
confusion table behind each kappa. Each automatic metric is compared with people's overall
consistency ratings (1-5) by Spearman's rho. Both are computed here (scipy is not installed):
kappa from the observed and chance agreement, rho as Pearson's r of average ranks.

Outputs are named "<job-id>:<index>", index being the line of the job's outputs.jsonl.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.evaluate.reader import jobs_with_outputs, read_outputs
from evaluators.probes import LABELS


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


NOMINAL = "nominal"
ORDINAL = "ordinal"


def krippendorff_alpha(units: Iterable[Sequence[Hashable]], level: str = NOMINAL) -> float | None:
    """Krippendorff's alpha over units, each the values its annotators gave (missing ones left out).

    Units with fewer than two values cannot be paired and are dropped. From the coincidence matrix
    o (each unit adds its ordered value pairs, weighted 1 / (m_u - 1)) with marginals n_c:
    alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck, with d the nominal metric (0 same, 1
    different) or the ordinal one ((sum of n_g for g from c to k) - (n_c + n_k) / 2) squared, the
    values in their natural order. None when there is nothing to pair or no variation at all.
    """
    if level not in (NOMINAL, ORDINAL):
        raise ValueError(f"alpha's level {level!r} is not supported; use {NOMINAL!r} or {ORDINAL!r}.")
    return alpha_from_pairs([unit_pairs(u) for u in units if len(u) >= 2], level)


def unit_pairs(unit: Sequence[Hashable]) -> dict[tuple[Hashable, Hashable], float]:
    """One unit's share of the coincidence matrix: its ordered value pairs, weighted 1 / (m_u - 1)."""
    m = len(unit)
    counts = Counter(unit)
    return {
        (c, k): nc * (nk - (c == k)) / (m - 1)
        for c, nc in counts.items()
        for k, nk in counts.items()
        if nc * (nk - (c == k))
    }


def alpha_from_pairs(units: Iterable[Mapping[tuple[Hashable, Hashable], float]], level: str = NOMINAL) -> float | None:
    """Alpha from the units' coincidence shares (`unit_pairs`): summed once, so a bootstrap
    resample costs one pass over its units, not a recount of every value."""
    o: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for unit in units:
        for pair, w in unit.items():
            o[pair] += w
    if not o:
        return None
    values = sorted({v for pair in o for v in pair}, key=lambda v: (str(type(v)), v))
    index = {v: i for i, v in enumerate(values)}
    n_c = [0.0] * len(values)
    for (c, _k), w in o.items():
        n_c[index[c]] += w
    n = sum(n_c)
    if level == NOMINAL:

        def delta(c: int, k: int) -> float:
            return 0.0 if c == k else 1.0
    else:
        cum = [0.0]
        for x in n_c:
            cum.append(cum[-1] + x)

        def delta(c: int, k: int) -> float:
            lo, hi = min(c, k), max(c, k)
            return (cum[hi + 1] - cum[lo] - (n_c[lo] + n_c[hi]) / 2) ** 2

    observed = sum(w * delta(index[c], index[k]) for (c, k), w in o.items())
    size = len(values)
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in range(size) for k in range(size))
    if expected == 0:
        return None  # every value the same: agreement cannot be told from chance
    return 1.0 - (n - 1) * observed / expected


BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 0
MIN_OVERLAP = 10  # items labelled by two or more people below which the numbers say little


def bootstrap_interval(
    items: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float | None],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """A percentile bootstrap interval of `statistic` over `items` resampled with replacement.

    The seed is fixed, so the same labels give the same interval. None for fewer than two items
    or when most resamples leave the statistic undefined (e.g. every resample constant).
    """
    n = len(items)
    if n < 2:
        return None
    rng = random.Random(seed)
    got = []
    for _ in range(reps):
        value = statistic(rng.choices(items, k=n))
        if value is not None and math.isfinite(value):
            got.append(value)
    if len(got) < reps / 2:
        return None
    got.sort()

    def quantile(q: float) -> float:
        pos = q * (len(got) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(got) - 1)
        return got[lo] + (got[hi] - got[lo]) * (pos - lo)

    tail = (1 - level) / 2
    return quantile(tail), quantile(1 - tail)


def _interval(ci: tuple[float, float] | None) -> list[float] | None:
    return [ci[0], ci[1]] if ci else None


# ----------------------------------------------------------------------------- from files


def machine_trait_labels(outputs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(output id, trait) -> {"label", "scorer"} for every expression output, and for every trait of
    an output labelled for all traits at once (`trait_labels`: a drift conversation's turn)."""
    labels = {}
    for row in outputs:
        if row.get("kind") == "expression" and row.get("trait"):
            labels[(str(row["output"]), str(row["trait"]))] = {
                "label": row.get("label"),
                "scorer": row.get("scorer", ""),
            }
        elif isinstance(row.get("trait_labels"), Mapping):
            for trait, label in row["trait_labels"].items():
                labels[(str(row["output"]), str(trait))] = {"label": label, "scorer": row.get("scorer", "")}
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
    kappa_ci: tuple[float, float] | None = None  # bootstrap 95% over the pairs

    def to_dict(self) -> dict[str, Any]:
        return {
            "trait": self.trait,
            "n": self.n,
            "kappa": self.kappa,
            "kappa_ci": _interval(self.kappa_ci),
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
            kappa_ci=bootstrap_interval(ps, _pairs_kappa),
        )
    return out


def _pairs_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    return cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])


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
    rho_ci: tuple[float, float] | None = None  # bootstrap 95% over the rated outputs

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "n": self.n, "rho": self.rho, "rho_ci": _interval(self.rho_ci)}


def metric_agreement(metrics: Mapping[str, Mapping[str, float]], annotations: Iterable[Any]) -> list[MetricAgreement]:
    """Spearman's rho of each metric against people's consistency ratings.

    `metrics` maps a metric name to {output id: value}; only outputs rated by people count.
    """
    human = consistency_ratings(annotations)
    out = []
    for name, values in metrics.items():
        common = [o for o in values if o in human and values[o] is not None]
        pairs = [(float(values[o]), human[o]) for o in common]
        rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
        ci = bootstrap_interval(pairs, lambda ps: spearman([a for a, _ in ps], [b for _, b in ps]))
        out.append(MetricAgreement(name, len(common), rho, ci))
    return out


# ----------------------------------------------------------------------------- people vs people


def _units(values: Mapping[str, Mapping[str, Hashable]]) -> list[dict[str, Hashable]]:
    """The items labelled by at least two annotators: annotator -> value, one dict per item."""
    return [dict(v) for v in values.values() if len(v) >= 2]


def _agreement_cell(units: list[dict[str, Hashable]], level: str, two: tuple[str, str] | None) -> dict[str, Any]:
    """Alpha (and kappa for exactly two annotators) with their bootstrap intervals over `units`."""

    shares = [unit_pairs(list(u.values())) for u in units]
    cell: dict[str, Any] = {
        "items": len(units),
        "alpha": alpha_from_pairs(shares, level),
        "alpha_ci": _interval(bootstrap_interval(shares, lambda us: alpha_from_pairs(us, level))),
    }
    if two is not None:
        both = [u for u in units if two[0] in u and two[1] in u]

        def kappa(us: Sequence[dict[str, Hashable]]) -> float | None:
            return cohen_kappa([u[two[0]] for u in us], [u[two[1]] for u in us])

        cell.update(kappa=kappa(both), kappa_ci=_interval(bootstrap_interval(both, kappa)), kappa_items=len(both))
    return cell


def people_agreement(annotations: Iterable[Any], min_overlap: int = MIN_OVERLAP) -> dict[str, Any]:
    """How far people agree with each other: Krippendorff's alpha per trait (nominal) and on the
    consistency rating (ordinal), Cohen's kappa too when exactly two people labelled; each with a
    bootstrap 95% interval. Only items labelled by at least two people count."""
    traits: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    ratings: dict[str, dict[str, int]] = defaultdict(dict)
    for ann in annotations:
        for trait, label in ann.trait_labels.items():
            if label in LABELS:
                traits[trait][ann.output][ann.annotator] = label
        if 1 <= int(ann.consistency or 0) <= 5:
            ratings[ann.output][ann.annotator] = int(ann.consistency)
    people = sorted(
        {a for t in traits.values() for item in t.values() for a in item}
        | {a for item in ratings.values() for a in item}
    )
    two = (people[0], people[1]) if len(people) == 2 else None
    out: dict[str, Any] = {
        "annotators": people,
        "traits": [],
        "consistency": None,
        "notes": [],
        "min_overlap": min_overlap,
        "bootstrap": {"reps": BOOTSTRAP_REPS, "seed": BOOTSTRAP_SEED},
    }
    if len(people) < 2:
        out["notes"].append(
            "Only one person has labelled so far: agreement between people needs a second "
            "annotator labelling the same outputs (a to change the annotator)."
        )
        return out
    for trait in sorted(traits):
        units = _units(traits[trait])
        if units:
            out["traits"].append({"trait": trait, **_agreement_cell(units, NOMINAL, two)})
    units = _units(ratings)
    if units:
        out["consistency"] = _agreement_cell(units, ORDINAL, two)
    overlap = len(
        {o for t in traits.values() for o, item in t.items() if len(item) >= 2}
        | {o for o, item in ratings.items() if len(item) >= 2}
    )
    out["overlap"] = overlap
    if overlap < min_overlap:
        out["notes"].append(
            f"Only {overlap} output(s) are labelled by two or more people; with fewer than {min_overlap} the "
            "numbers and their intervals say little. Label more of the same outputs."
        )
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
    outputs: list[dict[str, Any]] = []
    problems: list[str] = []
    for job_dir in jobs_with_outputs(workspace):
        # Tolerant, as the Annotate queue: a running job's half-written last line is skipped, a
        # bad line is named and left out, and the rest of the job still counts.
        outputs.extend(read_outputs(job_dir, problems))
    traits = trait_agreement(machine_trait_labels(outputs), annotations)
    metrics = metric_agreement(output_metrics(outputs), annotations)
    humans = sorted({a.annotator for a in annotations if a.trait_labels or a.consistency})
    return {
        "people": people_agreement(annotations),
        "annotators": humans,
        "labels": list(LABELS),
        "traits": [t.to_dict() for t in traits.values()],
        "metrics": [m.to_dict() for m in metrics if m.n],
        "rated": len(consistency_ratings(annotations)),
        "problems": problems,
    }
