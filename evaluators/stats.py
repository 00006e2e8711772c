"""Exact tests and intervals for comparing a fine-tuned model with its base, in pure Python.

scipy is not a dependency of the project, and these are a few lines each:

- `wilson`: the Wilson score interval of one proportion;
- `newcombe_diff`: Newcombe's hybrid score interval (his method 10, 1998) for the difference of
  two independent proportions (expression rates of two models on separately sampled replies);
- `newcombe_paired_diff`: Newcombe's interval (method 10 of his 1998 paper on paired data) for the
  difference of two proportions measured on the same items (knowledge probes scored by both);
- `mcnemar_exact`: the exact (binomial) McNemar test on the discordant pairs, two-sided;
- `fisher_exact`: Fisher's exact test of a 2×2 table, two-sided (tables no more likely than the
  one observed, as R and scipy sum them);
- `holm`: Holm's step-down adjustment of p-values for a family of tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054
# Tables whose probability is within this relative tolerance of the observed one count as "as
# extreme" (R's fisher.test uses the same 1e-7 guard against rounding).
_REL_TOL = 1 + 1e-7


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials is impossible.")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At k = 0 and k = n the bounds are exactly 0 and 1; say so rather than 0.9999999999999999.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for p1 - p2 of two independent proportions (Newcombe's method 10)."""
    if n1 <= 0 or n2 <= 0:
        return -1.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def newcombe_paired_diff(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for p1 - p2 on paired items (Newcombe 1998b, method 10).

    a: both yes, b: first yes / second no, c: first no / second yes, d: both no; p1 = (a+b)/n,
    p2 = (a+c)/n. The Wilson intervals of the two margins are combined with the correlation of
    the pairs (phi, continuity-corrected when positive, as in the paper).
    """
    n = a + b + c + d
    if n <= 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    if denom == 0:
        phi = 0.0
    else:
        cross = a * d - b * c
        phi = (max(cross - n / 2, 0.0) if cross > 0 else cross) / math.sqrt(denom)
    diff = p1 - p2
    dl = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    du = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return max(-1.0, diff - math.sqrt(max(dl, 0.0))), min(1.0, diff + math.sqrt(max(du, 0.0)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs b and c (1.0 when none)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact p-value of the table [[a, b], [c, d]]."""
    if min(a, b, c, d) < 0:
        raise ValueError("a 2×2 table holds counts, which cannot be negative.")
    row1, col1, n = a + b, a + c, a + b + c + d
    if n == 0:
        return 1.0
    lo, hi = max(0, col1 - (n - row1)), min(row1, col1)
    total = math.comb(n, col1)

    def prob(x: int) -> float:
        return math.comb(row1, x) * math.comb(n - row1, col1 - x) / total

    observed = prob(a)
    p = sum(q for q in (prob(x) for x in range(lo, hi + 1)) if q <= observed * _REL_TOL)
    return min(1.0, p)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values in the input order; None (an undecided test) stays None and is not
    counted in the family."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def best_fisher_p(n1: int, n2: int) -> float:
    """The smallest p-value Fisher's test can give with these sample sizes (all vs none)."""
    return fisher_exact(n1, 0, 0, n2) if n1 and n2 else 1.0


def best_mcnemar_p(n: int) -> float:
    """The smallest p-value the exact McNemar test can give on n paired items (all discordant)."""
    return mcnemar_exact(n, 0)
