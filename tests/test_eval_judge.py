"""The judge: strict parsing, one retry then unparseable, both-orders aggregation, prompt files.

The judge engine here is a scripted stand-in for an LLM endpoint (it answers from a list and
records what it was asked); everything it is plugged into is the real code.
"""

from __future__ import annotations

import pytest

from evaluators import judge as J
from sessions.demo import demo_persona, demo_session


class ScriptedEngine:
    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []

    def chat(self, messages, **sampling):
        self.asked.append([dict(m) for m in messages])
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.mark.parametrize(
    "text,verdict",
    [
        ("Verdict: A", "A"),
        ("Reply B keeps the voice better.\nVerdict: B", "B"),
        ("**Verdict:** tie", "tie"),
        ("verdict = b", "B"),
        ("Verdict: A ... on reflection, Verdict: B", "B"),  # the last verdict counts
        ("B", "B"),
        ("Tie.", "tie"),
        ("Both are fine.", None),
        ("Answer A is good but B is better", None),  # prose without the format is off-format
        ("", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert J.parse_verdict(text) == verdict


@pytest.mark.parametrize(
    "text,label",
    [
        ("Label: expressed", "expressed"),
        ("She mentions her hives.\nLabel: Expressed", "expressed"),
        ("Label: not shown", "not_shown"),
        ("label: not_shown", "not_shown"),
        ("contradicted", "contradicted"),
        ("The trait is expressed clearly.", None),
    ],
)
def test_parse_label(text, label):
    assert J.parse_label(text) == label


def test_off_format_is_retried_once_then_counted_unparseable():
    engine = ScriptedEngine(["I like both.", "Still both, honestly."])
    judge = J.Judge(engine, "scripted")
    call = judge.compare("quality", "Hi?", "Hello!", "Hey.")
    assert call.answer is None and call.status == J.UNPARSEABLE and call.attempts == 2
    # The retry shows the judge its own answer and the required format.
    retry = engine.asked[1]
    assert retry[1] == {"role": "assistant", "content": "I like both."}
    assert "Verdict: A, Verdict: B or Verdict: tie" in retry[2]["content"]
    assert judge.stats == {"calls": 2, "off_format": 1, "unparseable": 1}


def test_a_retry_that_answers_in_format_is_scored_and_counted():
    engine = ScriptedEngine(["Hmm, hard to say.", "Verdict: B"])
    judge = J.Judge(engine, "scripted")
    call = judge.compare("quality", "Hi?", "Hello!", "Hey.")
    assert (call.answer, call.status) == ("B", "retried")
    assert judge.stats == {"calls": 2, "off_format": 1, "retried_ok": 1}


@pytest.mark.parametrize(
    "first,second,outcome",
    [
        ("A", "B", "win"),  # model 1 preferred in both positions
        ("B", "A", "loss"),
        ("A", "A", "tie"),  # always the first position: pure position bias
        ("B", "B", "tie"),
        ("A", "tie", "win"),
        ("tie", "A", "loss"),
        ("tie", "tie", "tie"),
        (None, "B", J.UNPARSEABLE),
    ],
)
def test_both_orders_combine(first, second, outcome):
    assert J.combine(first, second) == outcome


def test_judge_pair_swaps_positions_and_a_position_biased_judge_gives_ties():
    engine = ScriptedEngine(["Verdict: A"])  # always picks the first reply shown
    judge = J.Judge(engine, "biased")
    pr = J.judge_pair(judge, "persona", "Hi?", "mine", "theirs", persona="Odile")
    assert pr.outcome == "tie" and pr.consistent is False
    first, second = (asked[0]["content"] for asked in engine.asked)
    assert first.index("mine") < first.index("theirs")
    assert second.index("theirs") < second.index("mine")
    assert "Odile" in first


def test_win_rates_with_intervals_and_unparseable_counted_apart():
    rates = J.win_rates(["win"] * 6 + ["tie"] * 2 + ["loss"] * 2 + [J.UNPARSEABLE] * 3)
    assert rates.n == 10 and rates.unparseable == 3
    assert rates.win.value == 0.6 and rates.tie.value == 0.2 and rates.loss.value == 0.2
    lo, hi = rates.win.interval
    assert lo < 0.6 < hi
    with pytest.raises(ValueError, match="unknown pair outcome"):
        J.win_rates(["won"])


def test_judge_labels_expression_with_the_rubric_and_names_itself():
    persona = demo_persona()
    trait = persona.trait("keeps-bees")
    engine = ScriptedEngine(["She talks about her hives.\nLabel: expressed"])
    judge = J.Judge(engine, "j1")
    got = judge.label(persona, trait, "What are you doing this weekend?", "Tending my bees.")
    assert (got.label, got.scorer) == ("expressed", "judge:j1")
    asked = engine.asked[0][0]["content"]
    assert trait.text in asked and "Tending my bees." in asked and "Odile Marsh" in asked
    off = J.Judge(ScriptedEngine(["no idea"]), "j2").label(persona, trait, "q", "r")
    assert off.label == J.UNPARSEABLE and off.detail["judge"]["status"] == J.UNPARSEABLE


def test_prompt_files_can_be_overridden_and_are_checked(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("Q: {{prompt}}\n1) {{reply_a}}\n2) {{reply_b}}\nVerdict: A, B or tie?")
    t = J.load_prompt("quality", mine)
    assert t.render(prompt="x", reply_a="y", reply_b="z").startswith("Q: x\n1) y\n2) z")
    engine = ScriptedEngine(["Verdict: tie"])
    J.Judge(engine, "j", {"quality": t}).compare("quality", "P", "R1", "R2")
    assert engine.asked[0][0]["content"].startswith("Q: P\n1) R1")
    broken = tmp_path / "broken.txt"
    broken.write_text("{{prompt}} {{reply_a}} {{replyb}}")
    with pytest.raises(J.PromptFileError, match=r"broken.txt lacks the placeholder \{\{reply_b\}\}"):
        J.load_prompt("quality", broken)
    with pytest.raises(J.PromptFileError, match="cannot be read"):
        J.load_prompt("quality", tmp_path / "missing.txt")
    for name in J.PROMPTS:  # every packaged prompt passes its own check
        assert J.load_prompt(name).text


def test_judge_and_reference_tables_render_from_scores():
    from rich.console import Console

    from evaluators.tables import tables_for

    rates = J.win_rates(["win"] * 3 + ["tie"] + [J.UNPARSEABLE]).to_dict()
    scores = {
        "kind": "tailoring",
        "eval": "t",
        "judge": "judge:x",
        "pairs": [{"model": "sft", "baseline": "base", "criterion": "personalization", "group": "rejected", **rates}],
    }
    ref = {
        "kind": "reference",
        "eval": "r",
        "rows": [
            {
                "model": "base",
                "n": 5,
                "bleu": 1.234,
                "rouge_l": 0.1,
                "f1": 0.2,
                "perplexity": 12.5,
                "bertscore": {"P": 0.5, "R": 0.6, "F1": 0.55},
                "bertscore_model": "all-MiniLM-L6-v2 layer 6",
                "hits": {"hits@1": 0.4, "n": 5, "candidates": 20, "ranked_by": "mean log-likelihood"},
                "hits@1": 0.4,
            }
        ],
    }
    console = Console(width=160, record=True)
    for s in (scores, ref):
        for t in tables_for(s):
            console.print(t)
    text = console.export_text()
    assert "rejected" in text and "75%" in text and "3/4" in text  # 3 wins of 4 parseable
    assert "1.23" in text and "12.50" in text and "40.0%" in text
    assert "among 20 candidates" in " ".join(text.split())  # the caption wraps at the table's width


# ----------------------------------------------------------------------------- constrained verdicts


def _endpoint_engine(server):
    from engines.openai_compat import OpenAIEngine
    from sessions.model import EngineSpec

    return OpenAIEngine(EngineSpec(id="j", kind="openai", base_url=server.url, model="teacher-1"))


def test_a_judge_on_an_endpoint_answers_under_the_verdict_schema():
    from fake_openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        judge = J.Judge(_endpoint_engine(server), "endpoint")
        pr = J.judge_pair(judge, "quality", "Hi?", "Hello there!", "k")
        label = judge.label(demo_persona(), demo_persona().traits[0], "What now?", "Bees, always.")
    assert pr.outcome in J.OUTCOMES and pr.first.constrained and pr.second.constrained
    assert pr.to_dict()["first"]["constrained"] is True and pr.scorer == "judge:endpoint"
    assert label.label in J.LABELS and label.detail["judge"]["constrained"] is True
    sent = server.requests[0]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["A", "B", "tie"]
    assert judge.stats == {"calls": 3, "constrained": 3}


def test_a_refused_schema_shape_falls_back_to_the_next_then_to_words():
    from fake_openai_server import FakeOpenAI

    with FakeOpenAI(reject_schema=True) as server:  # llama-cpp-python's server: no json_schema type
        judge = J.Judge(_endpoint_engine(server), "llama-server")
        call = judge.compare("quality", "Hi?", "Hello!", "Hey.")
        assert call.constrained and call.answer in J.VERDICTS
        assert server.requests[-1]["response_format"]["type"] == "json_object"  # the schema in llama's shape
        assert judge.stats["schema_refused"] == 1 and judge.constrained
    with FakeOpenAI(reply=lambda body: "Verdict: B", reject_schema="all") as server:  # cannot constrain at all
        judge = J.Judge(_endpoint_engine(server), "plain")
        call = judge.compare("quality", "Hi?", "Hello!", "Hey.")
        again = judge.compare("quality", "Hi?", "Hey.", "Hello!")
    assert (call.answer, call.constrained, judge.constrained) == ("B", False, False)
    assert again.answer == "B" and judge.stats["schema_refused"] == 2  # asked in words from then on
    assert "response_format" not in server.requests[-1]


@pytest.mark.slow
def test_the_bundled_judge_always_answers_in_the_verdict_format():
    """The tailoring study's quick run parsed 0 of 8 pairs free-text; under the grammar all parse."""
    from engines import open_engine

    engine = open_engine(demo_session().engines[0])
    try:
        judge = J.Judge(engine, "bundled", max_tokens=32)
        pairs = [
            ("What do you do at weekends?", "I tend my bees, then walk the coast path.", "Weekend."),
            ("Can you swim?", "Never learned; I keep to the shore with my maps.", "I am a language model."),
        ]
        results = [
            J.judge_pair(judge, "persona", p, a, b, persona="Odile keeps bees and draws maps.") for p, a, b in pairs
        ]
    finally:
        engine.close()
    assert all(r.outcome in J.OUTCOMES for r in results)
    assert all(c.constrained and c.attempts == 1 for r in results for c in (r.first, r.second))
    assert judge.stats["constrained"] == 4 and judge.stats[J.UNPARSEABLE] == 0
