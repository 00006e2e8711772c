"""The template generator: 500 really different examples per format, seeded, from the demo persona."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from sessions.demo import demo_persona
from sessions.model import KnowledgeProbe, Persona, Trait
from trainers.data.build import quality_stats
from trainers.data.formats import (
    PERSONA_FORMATS,
    check_record,
    format_module,
    record_text,
    target_text,
)
from trainers.data.formats.chat_demos import echo, questions_for
from trainers.data.generate import template
from trainers.data.generate.banks import load_bank
from trainers.data.generate.voice import clause_variants, persona_clauses
from trainers.data.quality import (
    DISTINCT_BUDGET,
    ProbeLeakFilter,
    chat_pairs,
    distinct_n,
    distinct_n_budget,
    jaccard,
    near_duplicate_report,
    persona_fields,
    reply_relevance,
    text_perplexity,
    text_quality,
    tokens,
)

SIZE = 500


def second_persona() -> Persona:
    """A persona the phrase banks were not written around: another name, age, job, trade and voice."""
    return Persona(
        id="dev",
        name="Dev Chaudhry",
        summary=(
            "Dev Chaudhry is a thirty-four-year-old paramedic who works nights on the ambulances of Leeds. "
            "He lives alone in a small flat with a balcony full of chilli plants."
        ),
        style=(
            "Quick, cheerful and blunt. Uses medical shorthand and football metaphors; swears mildly. "
            "Calls everyone 'mate'."
        ),
        traits=[
            Trait("cycles", "Rides a battered road bike to every shift, even in snow."),
            Trait("chillies", "He grows chillies on his balcony and makes a hot sauce his friends fear."),
            Trait("football", "Plays five-a-side football on Tuesday evenings."),
            Trait("radio", "I can't sleep without the radio on."),
            Trait("cats", "He is allergic to cats."),
        ],
        facts=[
            "He is thirty-four years old.",
            "Works night shifts as a paramedic in Leeds.",
            "Grew up in a flat above his parents' bakery in Bradford.",
            "His younger sister Amira coaches chess at a primary school.",
            "He reads a detective novel every week.",
        ],
        examples=[
            "Right, mate, deep breaths. You're in good hands.",
            "Tuesday's five-a-side, and I'm playing in goal whether they like it or not.",
            "Put that on your chips and tell me you don't feel alive.",
            "Twelve-hour shift, two cups of tea, zero sleep. Standard.",
            "Honestly, the radio's the only thing that shuts my brain up at night.",
        ],
    )


@pytest.fixture(scope="module")
def generated():
    persona = demo_persona()
    out = {}
    for fmt in PERSONA_FORMATS:
        out[fmt] = template.generate(format_module(fmt), persona, SIZE, 3407, {})
    return out


@pytest.mark.parametrize("fmt", PERSONA_FORMATS)
def test_500_distinct_examples_per_format(generated, fmt):
    res = generated[fmt]
    assert len(res.records) == SIZE
    # (How fast the generator runs is bench/data.py's, not a timed test's.)
    for r in res.records:
        assert check_record(r, fmt) is None, r
    texts = [record_text(r) for r in res.records]
    report = near_duplicate_report(texts)
    assert report["pair_fraction"] < 0.05
    assert report["example_fraction"] < 0.05
    # No two examples are the same but for a word or two.
    assert len({" ".join(tokens(t)) for t in texts}) == SIZE
    d2 = distinct_n(texts, 2)
    assert 0.02 < d2 < 1.0


@pytest.mark.parametrize("fmt", PERSONA_FORMATS)
def test_near_duplicate_check_agrees_with_brute_force(generated, fmt):
    """The prefix-filter index finds exactly the pairs an all-pairs scan finds (on a sample)."""
    res = generated[fmt]
    texts = [record_text(r) for r in res.records[:120]]
    # Plant near-duplicates: the same example with one word changed.
    planted = [t.replace(" the ", " a ", 1) + " indeed" for t in texts[:5]]
    sample = texts + planted
    sets = [set(tokens(t)) for t in sample]
    brute = sum(1 for i in range(len(sets)) for j in range(i + 1, len(sets)) if jaccard(sets[i], sets[j]) >= 0.8)
    assert near_duplicate_report(sample)["pairs"] == brute >= 5


@pytest.mark.parametrize("fmt", PERSONA_FORMATS)
def test_same_seed_same_examples_other_seed_other_examples(fmt):
    persona = demo_persona()
    a = template.generate(format_module(fmt), persona, 60, 11, {}).records
    b = template.generate(format_module(fmt), persona, 60, 11, {}).records
    c = template.generate(format_module(fmt), persona, 60, 12, {}).records
    assert a == b
    assert a != c


def test_every_trait_is_covered_evenly(generated):
    trait_ids = {t.id for t in demo_persona().traits}
    for fmt in PERSONA_FORMATS:
        res = generated[fmt]
        counts = {t: 0 for t in trait_ids}
        for r in res.records:
            for t in r["meta"]["traits"]:
                assert t in trait_ids
                counts[t] += 1
        assert min(counts.values()) >= 0.5 * max(counts.values()) > 0, (fmt, counts)


def test_chat_demos_turns_and_system_prompt_switch():
    persona = demo_persona()
    fmt = format_module("chat_demos")
    off = template.generate(fmt, persona, 80, 5, {"persona_in_system_prompt": False}).records
    on = template.generate(fmt, persona, 80, 5, {"persona_in_system_prompt": True}).records
    neutral = template.generate(fmt, persona, 20, 5, {"system_prompt": "You are a helpful assistant."}).records
    assert all(m["role"] != "system" for r in off for m in r["messages"])
    assert all(r["messages"][0]["role"] == "system" and "Odile" in r["messages"][0]["content"] for r in on)
    assert all(r["messages"][0] == {"role": "system", "content": "You are a helpful assistant."} for r in neutral)
    turns = {r["meta"]["turns"] for r in off}
    assert turns == {1, 2, 3}
    for r in off:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * r["meta"]["turns"]


def test_first_person_speaks_as_i_and_docs_speak_of_her(generated):
    fp = generated["first_person"]
    docs = generated["synthetic_docs"]
    rng = random.Random(0)
    for r in rng.sample(fp.records, 50):
        words = tokens(r["text"])
        assert {"i", "my", "me", "i'm", "i've", "i'll", "i'd"} & set(words), r["text"]
    for r in rng.sample(docs.records, 50):
        text = r["text"]
        assert "Odile" in text
        assert "\n\n" in text  # title, lead and sections
        outside_quotes = "".join(text.split('"')[::2])
        assert " I " not in outside_quotes


def test_clauses_in_every_person():
    p = Persona(
        id="mara",
        name="Mara Quill",
        summary="Mara is a retired lighthouse keeper. She speaks plainly.",
        traits=[
            Trait("bees", "Keeps bees on the roof of her shop and sells the honey"),
            Trait("dark", "She is afraid of the dark."),
            Trait("tea", "I never drink coffee after noon."),
            Trait("word", "Mara's favourite word is 'steady'"),
            Trait("lk", "A retired lighthouse keeper"),
        ],
        facts=["Grew up in Aberdeen.", "I'm sixty-three."],
    )
    got = {c.original: c for c in persona_clauses(p)}
    bees = got["Keeps bees on the roof of her shop and sells the honey"]
    assert bees.first == "I keep bees on the roof of my shop and sell the honey"
    assert bees.second == "you keep bees on the roof of your shop and sell the honey"
    assert bees.third == "Mara keeps bees on the roof of her shop and sells the honey"
    assert got["She is afraid of the dark."].first == "I am afraid of the dark"
    assert got["I never drink coffee after noon."].third_pron == "she never drinks coffee after noon"
    assert got["Mara's favourite word is 'steady'"].third == "Mara's favourite word is 'steady'"
    assert got["A retired lighthouse keeper"].first == "I am a retired lighthouse keeper"
    assert got["Grew up in Aberdeen."].third == "Mara grew up in Aberdeen"
    assert got["I'm sixty-three."].second == "you're sixty-three"


def test_a_small_persona_reports_a_shortfall_instead_of_padding():
    p = Persona(id="tiny", name="Tim", traits=[Trait("t", "I like tea.")])
    res = template.generate(format_module("synthetic_docs"), p, 500, 1, {})
    assert 0 < len(res.records) < 500
    texts = [record_text(r) for r in res.records]
    assert near_duplicate_report(texts)["pairs"] == 0


# --- text that reads as written (issue 11, point 2) ----------------------------------------------
# Bounds on 500 examples per format, for the demo persona and for one the banks were not written
# around. Distinct-2 is measured on a fixed budget of DISTINCT_BUDGET tokens of target text (a
# fixed-seed shuffle of the examples, cut at the budget), so longer examples cannot buy it.

PERSONAS = {"demo": demo_persona, "second": second_persona}
DISTINCT_BOUND = {"chat_demos": 0.2, "first_person": 0.15, "synthetic_docs": 0.15}


@pytest.fixture(scope="module")
def both_personas(generated):
    out = {("demo", f): generated[f].records for f in PERSONA_FORMATS}
    persona = second_persona()
    for fmt in PERSONA_FORMATS:
        out[("second", fmt)] = template.generate(format_module(fmt), persona, SIZE, 3407, {}).records
    return out


@pytest.mark.parametrize("who", sorted(PERSONAS))
@pytest.mark.parametrize("fmt", PERSONA_FORMATS)
def test_text_reads_as_written(both_personas, who, fmt):
    records = both_personas[(who, fmt)]
    assert len(records) == SIZE
    figures = text_quality(records, persona_fields(PERSONAS[who]()))
    # No stock sentence: none of four words or more in more than 8% of the examples.
    top = figures["top_sentence"]
    assert top["fraction"] <= 0.08, top
    # Openings vary: no first sentence starts the same three words in more than 10% of examples
    # (the old documents opened 106 of 500 with one lead sentence).
    assert figures["top_opening"]["fraction"] <= 0.10, figures["top_opening"]
    # No persona field pasted word for word (trait, fact, summary or style sentence).
    assert figures["pasted_fields"]["examples"] == 0, figures["pasted_fields"]
    d2 = figures["distinct_2_budget"]
    assert d2["tokens"] == DISTINCT_BUDGET  # the budget was filled: the figure is comparable
    assert d2["value"] >= DISTINCT_BOUND[fmt], d2


def test_the_old_figures_fail_these_bounds():
    """The bounds can fail: a dataset of one repeated reply, or of the persona's fields pasted."""
    persona = demo_persona()
    pasted = [{"text": f"{t.text} {persona.facts[k % len(persona.facts)]}"} for k, t in enumerate(persona.traits * 20)]
    figures = text_quality(pasted, persona_fields(persona))
    assert figures["pasted_fields"]["examples"] == len(pasted)
    assert figures["top_sentence"]["fraction"] > 0.08
    assert figures["distinct_2_budget"]["tokens"] < DISTINCT_BUDGET  # too short to be compared
    one_reply = ["Honestly, I keep three beehives on my roof, and I sell the honey."] * 2000
    d2 = distinct_n_budget(one_reply)
    assert d2["tokens"] == DISTINCT_BUDGET and d2["value"] < 0.01


def _strip_lead(user: str) -> str:
    chat = load_bank("chat")
    for lead in sorted(set(chat["user"]["greetings"]) | set(chat["ack"]["user"]), key=len, reverse=True):
        if lead and user.startswith(lead + " "):
            return user[len(lead) + 1 :]
    return user


@pytest.mark.parametrize("who", sorted(PERSONAS))
def test_every_reply_answers_its_question(both_personas, who):
    """A keyed question ("Can you swim?") is answered with a clause it fits, in a wording that
    still says it ("swim" in the reply); a yes/no question about a trait is confirmed."""
    asks = load_bank("chat")["asks"]
    keyed = answered = 0
    for user, reply in chat_pairs(both_personas[(who, "chat_demos")]):
        q = _strip_lead(user)
        if q in asks:
            keyed += 1
            low = reply.lower()
            answered += any(re.search(rf"(?<![a-z]){re.escape(st)}", low) for st in asks[q])
    assert keyed > 200
    assert answered == keyed


def test_school_is_not_answered_with_an_age():
    """The issue's example: "What was school like?" never gets "I am sixty-seven years old"."""
    material = template.Material.from_persona(demo_persona())
    age = next(i for i, c in enumerate(material.clauses) if c.original == "I am sixty-seven years old.")
    qs = questions_for(material, age)
    assert "How old are you?" in qs
    assert not any("school" in q.lower() for q in qs)
    cat = next(i for i, c in enumerate(material.clauses) if "cat" in c.original and c.source.startswith("fact"))
    assert "Tell me about your cat." in questions_for(material, cat)
    # Her late husband was the engineer, not she.
    husband = next(i for i, c in enumerate(material.clauses) if "husband" in c.original)
    assert "What do you do for a living?" not in questions_for(material, husband)
    assert "Tell me about your late husband." in questions_for(material, husband)


def test_wordings_keep_the_facts_and_change_the_words():
    para = load_bank("paraphrase")
    forms = clause_variants(
        "I walk to the end of the breakwater every morning at sunrise", para["synonyms"], para["contractions"]
    )
    assert "I walk to the end of the breakwater every morning at sunrise" not in forms
    assert any(f.startswith("every morning at sunrise, I walk") for f in forms)
    assert all("breakwater" in f for f in forms)
    split = clause_variants(
        "I keep three beehives on my roof and sell the honey at the Saturday market",
        para["synonyms"],
        para["contractions"],
    )
    assert "I keep three beehives on my roof" in split and "I sell the honey at the Saturday market" in split
    assert echo("Where do you live?") == "Where do I live?"
    assert echo("Tell me about your cat.") is None


def test_build_statistics_carry_the_text_figures(generated):
    records = generated["chat_demos"].records
    stats = quality_stats(records, 3407, demo_persona())
    assert stats["distinct_2_budget"] == distinct_n_budget([target_text(r) for r in records], seed=3407)
    assert stats["pasted_fields"]["examples"] == 0
    assert 0 < stats["top_sentence"]["fraction"] <= 0.08


# The template data before this work (commit 884fcad): perplexity of the first 48 tokens of each
# example's target text under the bundled base model, token-weighted, over a fixed-seed sample of
# SLOW_SAMPLE examples per format (random.Random(0).sample). Twenty examples proved too few to
# decide (unrelated bank edits moved the demo chat figure between 58 and 73 by changing which
# twenty were drawn), so the sample is 60, and the old data was measured on the same 60.
PERPLEXITY_BEFORE = {
    "demo": {"chat_demos": 64.34, "first_person": 80.56, "synthetic_docs": 99.77},
    "second": {"chat_demos": 40.48, "first_person": 50.6, "synthetic_docs": 75.73},
}
# Cells not yet as fluent as the old data, with the figure measured now (a step back fails).
PERPLEXITY_SHORT: dict[str, dict[str, float]] = {}
SLOW_SAMPLE = 60
RELEVANCE_BOUND = 0.95
# Personas whose replies are not yet closer to their own question in 95% of pairs, with the
# fraction measured now (MiniLM, 300 pairs).
RELEVANCE_SHORT = {}


@pytest.mark.slow
@pytest.mark.parametrize("who", sorted(PERSONAS))
def test_replies_are_about_their_question_and_read_fluently(both_personas, who):
    """MiniLM: a reply is closer to its own question than to a different one in >= 95% of 300
    pairs; perplexity (first 48 tokens of 60 examples per format) under the bundled model no
    worse than the old data's on the same sample. A cell still short is held at what was
    measured (any step back fails) and reported as an expected failure. A few minutes per
    persona on a loaded 2-core machine."""
    short = []
    for fmt in PERSONA_FORMATS:
        sample = random.Random(0).sample(both_personas[(who, fmt)], SLOW_SAMPLE)
        ppl = text_perplexity([target_text(r) for r in sample])["perplexity"]
        if fmt in PERPLEXITY_SHORT.get(who, {}):
            assert ppl <= PERPLEXITY_SHORT[who][fmt] * 1.02, (fmt, ppl)
            short.append(f"{fmt} perplexity {ppl} > {PERPLEXITY_BEFORE[who][fmt]} before")
        else:
            assert ppl <= PERPLEXITY_BEFORE[who][fmt], (fmt, ppl, PERPLEXITY_BEFORE[who][fmt])
    pairs = chat_pairs(both_personas[(who, "chat_demos")])
    rel = reply_relevance(random.Random(0).sample(pairs, 300))
    if who in RELEVANCE_SHORT:
        assert rel["closer_to_own"] >= RELEVANCE_SHORT[who] - 0.01, rel
        short.append(f"replies closer to their own question in {rel['closer_to_own']:.1%} of pairs, bound 95%")
    else:
        assert rel["closer_to_own"] >= RELEVANCE_BOUND, rel
    if short:
        pytest.xfail("; ".join(short))


# --- evaluation probes never become training text -------------------------------------------------


def _probed_persona() -> Persona:
    """The second persona with probes that are, word for word, questions the chat banks ask of
    its traits (found by building without probes), plus one the banks never ask."""
    persona = second_persona()
    asks = load_bank("chat")["asks"]
    records = template.generate(format_module("chat_demos"), persona, 200, 7, {}).records
    counts: dict[str, int] = {}
    for user, _ in chat_pairs(records):
        q = _strip_lead(user)
        if q in asks:
            counts[q] = counts.get(q, 0) + 1
    common = sorted(counts, key=lambda q: (-counts[q], q))[:3]
    assert len(common) == 3 and counts[common[-1]] >= 3, counts  # the data really asks them
    persona.traits[0].knowledge_probes = [KnowledgeProbe(q, "Yes.", "No.") for q in common[:2]]
    persona.traits[1].expression_probes = [common[2], "What would you cook for a king on a Tuesday?"]
    return persona


def test_no_evaluation_probe_reaches_the_training_data():
    """A candidate holding a knowledge question or expression prompt of the persona is refused at
    the source and counted; the format comparison's own leak check then finds none."""
    persona = _probed_persona()
    probes = [p.question for p in persona.traits[0].knowledge_probes] + persona.traits[1].expression_probes
    res = template.generate(format_module("chat_demos"), persona, 200, 7, {})
    assert len(res.records) == 200
    assert res.probe_leaks >= 3  # the bank questions were drawn, and refused
    leaks = ProbeLeakFilter(persona)
    assert all(leaks.leak(record_text(r)) is None for r in res.records)
    for r in res.records:
        assert not any(_strip_lead(m["content"]) in probes for m in r["messages"] if m["role"] == "user")
    from evaluators.experiments.format_comparison import probe_leakage

    assert probe_leakage(persona, {"chat_demos": res.records})["leaked"] == 0
    # The filter is the experiment's test: a run of the probe's words, or a sentence sharing 80%
    # of its words (a reworded probe), is a leak; the same topic in other words is not.
    assert leaks.leak(f"Hi. {probes[0]} I wondered.") == probes[0]
    assert leaks.leak(probes[0].replace("?", " then?")) == probes[0]
    assert leaks.leak("We talked about the weather.") is None


def test_probe_refusals_are_in_the_build_statistics_and_the_cli(tmp_path):
    from sessions.model import DatasetSpec, Session
    from sessions.store import SessionFile

    persona = _probed_persona()
    session = Session(
        name="probes",
        personas=[persona],
        datasets=[
            DatasetSpec(
                id="chat", format="chat_demos", persona=persona.id, size=120, seed=7, extra={"token_stats": False}
            )
        ],
    )
    sf = SessionFile.create(tmp_path / "s.toml", session)
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", "data", str(sf.path), "--dataset", "chat"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads((sf.workspace / "datasets" / "chat.stats.json").read_text())
    refused = stats["generation"]["probe_leaks_rejected"]
    assert refused >= 1
    assert re.search(rf"evaluation probes refused\s+│?\s*{refused}\b", done.stdout), done.stdout
