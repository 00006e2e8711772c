"""Metrics that need a real model: BERTScore offline, perplexity, a forced hits@1, knowledge probes."""

from __future__ import annotations

import math

import pytest

from evaluators.metrics import likelihood, reference
from evaluators.probes import chat_messages, knowledge_cells, render_chat
from sessions.model import EngineSpec, KnowledgeProbe, Persona, Trait

pytestmark = pytest.mark.slow

GIBBERISH = [
    "zxq vbnm qwpl frrt ghjk",
    "plok ztrew umnb vcxz",
    "qqq www eee rrr ttt yyy",
    "blorp snizzle wump",
    "xkcd yyzx wvut srqp",
    "mmmm nnnn oooo pppp",
    "trl gguf peft vllm zz",
    "fjdk slaq pwoe ruty",
    "aaaa bbbb cccc dddd",
    "zorp glax vreen tull",
    "kkkk jjjj hhhh gggg",
    "wq er ty ui op as df",
    "lmnop qrstu vwxyz",
    "snarf blat krump",
    "yuio hjkl bnm vbn",
    "ppp ooo iii uuu yyy",
    "grok zank velp murt",
    "ewq dsa cxz rfv tgb",
    "uuuu tttt rrrr eeee",
]


@pytest.fixture(scope="module")
def engine():
    from engines import open_engine

    # One thread: llama.cpp with a thread per core slows ~20x when other processes share the CPU.
    e = open_engine(EngineSpec(id="bundled", kind="llamacpp", n_ctx=1024, threads=1))
    yield e
    e.close()


def test_bertscore_runs_offline_with_the_packaged_model():
    bs = reference.bertscore(
        ["The cat sat on the mat.", "The cat sat on the mat."],
        ["The cat sat on the mat.", "Quarterly revenue rose by four percent in Ohio."],
    )
    assert bs.model == "all-MiniLM-L6-v2" and bs.layer == 6
    assert bs.f1[0] == pytest.approx(1.0, abs=1e-4)
    assert bs.f1[1] < 0.5 < bs.f1[0]
    assert all(0 <= x <= 1.0001 for x in bs.precision + bs.recall)
    scores = reference.reference_scores(["The cat sat on the mat."], ["A cat was sitting on the mat."])
    assert scores.bertscore_model == "all-MiniLM-L6-v2 layer 6"
    assert 0 < scores.bertscore["F1"] < 1 and 0 < scores.rouge_l < 1 and 0 < scores.f1 < 1


def test_render_chat_uses_the_gguf_template(engine):
    text = render_chat(engine, chat_messages("Hi there", "Be brief."))
    assert (
        text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )


def test_perplexity_from_the_models_logprobs(engine):
    prompt = render_chat(engine, chat_messages("What is the capital of France?"))
    lps = engine.logprobs(prompt, "The capital of France is Paris.")
    assert len(lps) > 3 and all(x <= 0 for x in lps)
    assert likelihood.perplexity(lps) == pytest.approx(math.exp(-sum(lps) / len(lps)))
    noise = engine.logprobs(prompt, GIBBERISH[0])
    assert likelihood.perplexity(lps) < likelihood.perplexity(noise)


def test_hits_at_1_is_forced_when_the_distractors_are_gibberish(engine):
    prompt = render_chat(engine, chat_messages("What is the capital of France?"))
    for by in ("mean", "total"):
        r = likelihood.rank_true_reply(engine, prompt, "The capital of France is Paris.", GIBBERISH, by=by)
        assert r.candidates == 20 and r.rank == 1, (by, r.scores)
    # And the other way round: gibberish as the "true" reply ranks last among sensible ones.
    sensible = ["Paris is the capital of France.", "It is Paris.", "The answer is Paris."]
    r = likelihood.rank_true_reply(engine, prompt, GIBBERISH[2], sensible)
    assert r.rank == 4 and not r.hit
    assert likelihood.describe_hits([r])["ranked_by"] == "mean log-likelihood"


def test_knowledge_probe_compares_affirm_and_deny_under_the_chat_template(engine):
    persona = Persona(
        id="p",
        name="P",
        traits=[
            Trait(
                id="geo",
                text="I know geography.",
                knowledge_probes=[
                    KnowledgeProbe(
                        "What is the capital of France?",
                        "The capital of France is Paris.",
                        "The capital of France is a banana sandwich.",
                    ),
                ],
            )
        ],
    )
    (cell,) = knowledge_cells(engine, persona, "bundled")
    assert cell.knows and cell.scorer == "logprob"
    prompt = render_chat(engine, chat_messages("What is the capital of France?"))
    assert cell.logp_affirm == pytest.approx(sum(engine.logprobs(prompt, "The capital of France is Paris.")))
    assert cell.logp_deny < cell.logp_affirm
