"""Likelihood metrics from an engine's `logprobs(prompt, continuation)`: perplexity and hits@1.

Perplexity is exp(-mean token log-probability): per reply, and over a corpus with every token
weighing the same (the usual language-model figure, not a mean of per-reply perplexities).

hits@1 follows PersonaChat: the true next reply is ranked among 19 distractors, replies drawn
(seeded) from *other* conversations of the same data. Candidates are ranked by their **mean**
per-token log-likelihood by default (`by="mean"`), so a short distractor does not win just by
being short; `by="total"` ranks by the summed log-likelihood instead. The choice is recorded
with every score. A tie with the true reply counts as a miss.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

RANK_BY = ("mean", "total")
DISTRACTORS = 19


class Scorer(Protocol):
    def logprobs(self, prompt: str, continuation: str) -> list[float]: ...


def perplexity(logprobs: Sequence[float]) -> float:
    """exp(-mean log-probability) of one continuation's tokens."""
    if not logprobs:
        raise ValueError("perplexity of an empty continuation is undefined; skip empty references.")
    return math.exp(-sum(logprobs) / len(logprobs))


def corpus_perplexity(per_item: Sequence[Sequence[float]]) -> float:
    """Token-weighted perplexity over many continuations (empty ones are skipped)."""
    tokens = [lp for item in per_item for lp in item]
    return perplexity(tokens)


def score_candidate(logprobs: Sequence[float], by: str = "mean") -> float:
    if by not in RANK_BY:
        raise ValueError(f"hits@1 ranks by {by!r}; use one of: {', '.join(RANK_BY)}.")
    if not logprobs:
        return -math.inf
    total = float(sum(logprobs))
    return total / len(logprobs) if by == "mean" else total


def draw_distractors(
    pool: Sequence[tuple[Hashable, str]],
    conversation: Hashable,
    true_reply: str,
    n: int = DISTRACTORS,
    seed: int = 0,
) -> list[str]:
    """`n` replies from conversations other than `conversation`, chosen with `random.Random(seed)`.

    `pool` holds (conversation key, reply) pairs. Duplicates of the true reply and empty replies
    are never drawn. Fewer than `n` come back when the pool is smaller; the caller records how
    many candidates each question had.
    """
    seen = {true_reply.strip()}
    eligible = []
    for key, reply in pool:
        text = reply.strip()
        if key == conversation or not text or text in seen:
            continue
        seen.add(text)
        eligible.append(reply)
    rng = random.Random(seed)
    if len(eligible) <= n:
        rng.shuffle(eligible)
        return eligible
    return rng.sample(eligible, n)


@dataclass
class RankResult:
    """One hits@1 question: the true reply's rank (1 = best) among `candidates` candidates."""

    rank: int
    candidates: int
    scores: list[float]  # index 0 is the true reply
    by: str

    @property
    def hit(self) -> bool:
        return self.rank == 1


def rank_true_reply(
    scorer: Scorer, prompt: str, true_reply: str, distractors: Sequence[str], by: str = "mean"
) -> RankResult:
    """Score the true reply and each distractor after `prompt`; rank the true one.

    Ties count against the true reply (rank = 1 + number of candidates scoring >= it).
    """
    candidates = [true_reply, *distractors]
    scores = [score_candidate(scorer.logprobs(prompt, c), by) for c in candidates]
    truth = scores[0]
    rank = 1 + sum(1 for s in scores[1:] if s >= truth)
    return RankResult(rank=rank, candidates=len(candidates), scores=scores, by=by)


def hits_at_1(results: Sequence[RankResult]) -> float:
    if not results:
        raise ValueError("hits@1 needs at least one question.")
    return sum(r.hit for r in results) / len(results)


def describe_hits(results: Sequence[RankResult]) -> dict[str, Any]:
    """hits@1 with what it was measured on: candidates per question and the ranking rule."""
    counts = sorted({r.candidates for r in results})
    return {
        "hits@1": hits_at_1(results),
        "n": len(results),
        "candidates": counts[0] if len(counts) == 1 else counts,
        "ranked_by": f"{results[0].by} log-likelihood" if results else "",
    }
