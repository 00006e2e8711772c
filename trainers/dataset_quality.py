"""How different the examples of a dataset are: near-duplicates and distinct-n.

Near-duplicates are pairs whose token sets have Jaccard similarity at or above a threshold
(0.8 by default: two examples that share 80% of their distinct words are one example twice).
Finding every such pair is exact and cheap with *prefix filtering* (Chaudhuri et al.; Bayardo's
All-Pairs): order each token set by one fixed global order; two sets with Jaccard >= t must
share a token among the first ``n - ceil(t * n) + 1`` tokens of each, so only pairs sharing a
prefix token are candidates, and each candidate is checked exactly. A whole dataset is ordered
rarest token first (few candidates); the online index that generators feed one example at a time
cannot know frequencies ahead, so it orders by a stable hash (still exact, prunes less).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

DEFAULT_THRESHOLD = 0.8


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens: what Jaccard and distinct-n count."""
    return _WORD.findall(text.lower())


def _order_key(token: str) -> tuple[int, str]:
    return (zlib.crc32(token.encode("utf-8")), token)


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _prefix_len(n: int, threshold: float) -> int:
    return n - math.ceil(threshold * n) + 1 if n else 0


class NearDuplicateIndex:
    """Online near-duplicate detector: `add` refuses a text too close to one already added."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold {threshold} must be in (0, 1].")
        self.threshold = threshold
        self._sets: list[set[str]] = []
        self._postings: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def find(self, text_or_tokens: str | Iterable[str]) -> int | None:
        """Index of an added item with Jaccard >= threshold, or None."""
        s = set(tokens(text_or_tokens)) if isinstance(text_or_tokens, str) else set(text_or_tokens)
        return self._find(s, sorted(s, key=_order_key))

    def _find(self, s: set[str], ordered: list[str]) -> int | None:
        n = len(s)
        seen: set[int] = set()
        for tok in ordered[: _prefix_len(n, self.threshold)]:
            for j in self._postings.get(tok, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = self._sets[j]
                m = len(other)
                # Size filter: |A ∩ B| <= min(n, m), so Jaccard <= min/max.
                if min(n, m) < self.threshold * max(n, m):
                    continue
                if jaccard(s, other) >= self.threshold:
                    return j
        return None

    def add(self, text_or_tokens: str | Iterable[str]) -> bool:
        """Add the item unless it near-duplicates an earlier one; True when it was added."""
        s = set(tokens(text_or_tokens)) if isinstance(text_or_tokens, str) else set(text_or_tokens)
        ordered = sorted(s, key=_order_key)
        if self._find(s, ordered) is not None:
            return False
        self.force_add(s, ordered)
        return True

    def force_add(self, s: set[str], ordered: list[str] | None = None) -> int:
        ordered = ordered if ordered is not None else sorted(s, key=_order_key)
        idx = len(self._sets)
        self._sets.append(s)
        for tok in ordered[: _prefix_len(len(s), self.threshold)]:
            self._postings.setdefault(tok, []).append(idx)
        return idx


def near_duplicate_pairs(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> list[tuple[int, int, float]]:
    """Every pair (i, j, jaccard) with i < j and token Jaccard >= threshold; exact.

    Knowing all texts up front, prefixes are ordered rarest token first, so common words
    ("the", "i") almost never make two texts candidates.
    """
    sets = [set(tokens(t)) for t in texts]
    df: dict[str, int] = {}
    for s in sets:
        for tok in s:
            df[tok] = df.get(tok, 0) + 1
    postings: dict[str, list[int]] = {}
    pairs: list[tuple[int, int, float]] = []
    for j, s in enumerate(sets):
        ordered = sorted(s, key=lambda t: (df[t], t))
        n = len(s)
        prefix = ordered[: _prefix_len(n, threshold)]
        seen: set[int] = set()
        for tok in prefix:
            for i in postings.get(tok, ()):
                if i in seen:
                    continue
                seen.add(i)
                other = sets[i]
                if min(n, len(other)) < threshold * max(n, len(other)):
                    continue
                sim = jaccard(s, other)
                if sim >= threshold:
                    pairs.append((i, j, sim))
        for tok in prefix:
            postings.setdefault(tok, []).append(j)
    return pairs


def near_duplicate_report(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> dict[str, float | int]:
    """Pairs at or above the threshold, as a count and as fractions of all pairs and examples."""
    n = len(texts)
    pairs = near_duplicate_pairs(texts, threshold)
    total_pairs = n * (n - 1) // 2
    involved = {i for i, _, _ in pairs} | {j for _, j, _ in pairs}
    return {
        "threshold": threshold,
        "pairs": len(pairs),
        "pair_fraction": len(pairs) / total_pairs if total_pairs else 0.0,
        "examples_with_near_duplicate": len(involved),
        "example_fraction": len(involved) / n if n else 0.0,
    }


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, over the whole dataset."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = tokens(text)
        for i in range(len(toks) - n + 1):
            seen.add(tuple(toks[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0
