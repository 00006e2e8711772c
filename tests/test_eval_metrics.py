"""Reference and likelihood metrics against documented or hand-computed values (no model)."""

from __future__ import annotations

import math

import pytest

from evaluators.metrics import likelihood, reference

# sacrebleu's README example: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944
# hyp_len = 17 ref_len = 18)".
SACREBLEU_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
SACREBLEU_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]


def test_corpus_bleu_matches_sacrebleus_documented_example():
    per_reply = [list(r) for r in zip(*SACREBLEU_REFS)]  # our API: references per reply
    b = reference.bleu_corpus(SACREBLEU_SYS, per_reply)
    assert round(b.score, 2) == 48.53
    assert [round(p, 1) for p in b.precisions] == [82.4, 50.0, 45.5, 37.5]
    assert round(b.bp, 3) == 0.943
    assert (b.sys_len, b.ref_len) == (17, 18)
    assert "13a" in b.signature


def test_sentence_bleu_is_100_for_an_exact_match_and_lower_otherwise():
    assert reference.bleu_sentence("The dog bit the man.", "The dog bit the man.").score == pytest.approx(100.0)
    partial = reference.bleu_sentence("The dog bit a man.", "The dog bit the man.").score
    assert 0 < partial < 100


def test_corpus_bleu_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 replies but 1 references"):
        reference.bleu_corpus(["a", "b"], ["a"])


def test_rouge_l_on_a_hand_computed_pair():
    # LCS of "a cat sat on mat" and "the cat sat on the mat" is "cat sat on mat": 4 tokens.
    p, r, f = reference.rouge_l("a cat sat on mat", "the cat sat on the mat")
    assert p == pytest.approx(4 / 5)
    assert r == pytest.approx(4 / 6)
    assert f == pytest.approx(8 / 11)  # 2 * LCS / (5 + 6)


def test_parlai_normalisation_strips_case_punctuation_and_articles():
    assert reference.normalize_answer("The Cat, sat on A mat!") == "cat sat on mat"
    assert reference.normalize_answer("An apple-a-day") == "apple day"
    assert reference.normalize_answer("  it's   THE end. ") == "it s end"
    assert reference.normalize_answer("theatre anthem") == "theatre anthem"  # whole words only


def test_unigram_f1_hand_computed():
    # Identical after normalisation.
    assert reference.unigram_f1("The cat, sat on a mat!", "the Cat sat on THE mat.") == 1.0
    # guess -> "apple day keeps doctors away" (5), answer -> "one apple per day" (4), 2 common.
    assert reference.unigram_f1("An apple a day keeps doctors away.", "one apple per day") == pytest.approx(4 / 9)
    # Repeated words count only as often as they occur in both (bag intersection).
    p, r, f = reference.unigram_prf("dog dog dog", "dog cat")
    assert (p, r) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert f == pytest.approx(0.4)
    assert reference.unigram_f1("nothing shared", "completely different") == 0.0
    # PersonaChat takes the best over several answers.
    assert reference.unigram_f1("cat sat", ["dog ran", "cat sat"]) == 1.0


def test_perplexity_is_exp_of_minus_the_mean_logprob():
    lps = [math.log(0.5), math.log(0.25)]
    assert likelihood.perplexity(lps) == pytest.approx(math.sqrt(8))
    # Corpus perplexity weighs every token the same, not every item.
    corpus = likelihood.corpus_perplexity([[math.log(0.5)], [math.log(0.25)] * 3])
    assert corpus == pytest.approx(math.exp(-(math.log(0.5) + 3 * math.log(0.25)) / 4))
    with pytest.raises(ValueError, match="empty"):
        likelihood.perplexity([])


def test_distractors_come_from_other_conversations_seeded_and_without_the_answer():
    pool = [("c1", "true reply"), ("c1", "same conversation")] + [(f"c{i}", f"reply {i}") for i in range(2, 40)]
    pool.append(("c9", "true reply"))  # a duplicate of the answer elsewhere is never a distractor
    d = likelihood.draw_distractors(pool, "c1", "true reply", n=19, seed=5)
    assert len(d) == 19 and len(set(d)) == 19
    assert "same conversation" not in d and "true reply" not in d
    assert d == likelihood.draw_distractors(pool, "c1", "true reply", n=19, seed=5)
    assert d != likelihood.draw_distractors(pool, "c1", "true reply", n=19, seed=6)
    # A small pool gives what it has.
    assert len(likelihood.draw_distractors(pool[:5], "c1", "true reply", n=19)) == 3


def test_rank_counts_ties_against_the_true_reply():
    class TableScorer:
        """Log-probabilities from a table: the scorer interface the metric needs, no model."""

        def __init__(self, table):
            self.table = table

        def logprobs(self, prompt, continuation):
            return self.table[continuation]

    s = TableScorer({"yes": [-1.0, -1.0], "no": [-3.0], "maybe": [-0.5, -0.5, -0.5, -2.5]})
    # mean: yes -1.0, no -3.0, maybe -1.0 (tie) -> rank 2; total: yes -2, no -3, maybe -4 -> rank 1
    assert likelihood.rank_true_reply(s, "p", "yes", ["no", "maybe"], by="mean").rank == 2
    assert likelihood.rank_true_reply(s, "p", "yes", ["no", "maybe"], by="total").rank == 1
    with pytest.raises(ValueError, match="use one of: mean, total"):
        likelihood.rank_true_reply(s, "p", "yes", ["no"], by="max")
