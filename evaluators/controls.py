"""Controls for a trait evaluation: measurements that must come out *unchanged* by fine-tuning,
so that a run which merely learned to recite its persona everywhere, or lost its general
ability, fails visibly instead of scoring well.

(a) unrelated persona: knowledge probes of a character the run was never trained on (below);
    the run may score at most UNRELATED_MARGIN above the base (paired on the same probes): a
    lean towards the affirming answer whatever the facts, which would inflate the persona's own
    knowledge score. A fall is shown, not failed: a run that has become its persona denies a
    stranger's facts ("Do you ride a motorbike?"), as that persona would (docs/evaluation.md).
(b) over-expression: replies to prompts that touch no trait; the share of replies that mention
    any trait's phrases may rise by at most OVER_MARGIN over the base's share.
(c) general ability: perplexity of plain text about none of this (below) may rise by at most
    ABILITY_BOUND times the base's.

The texts are written for this project; none of them touch the demo persona's traits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.base import Engine
    from sessions.model import Persona

UNRELATED_MARGIN = 0.15
OVER_MARGIN = 0.10
ABILITY_BOUND = 1.25

NEUTRAL_PROMPTS = (
    "What is two plus two?",
    "Explain how a refrigerator keeps food cold.",
    "Give me a synonym for the word happy.",
    "How many days are there in a leap year?",
    "What is the capital of France?",
    "How do I reset a forgotten email password?",
    "What is the difference between weather and climate?",
    "Name the three primary colours.",
    "How do you boil an egg?",
    "What does the processor in a computer do?",
    "Suggest a name for a pet goldfish.",
    "Translate good morning into Spanish.",
    "How long should I rest between workouts?",
    "Why do we have leap seconds?",
    "What is a prime number?",
    "Write one sentence about a bicycle.",
)

GENERAL_TEXT = (
    "Photosynthesis is the process by which green plants turn light into chemical energy. Inside "
    "the leaf, chlorophyll absorbs red and blue light, and the energy is used to split water and "
    "to build sugars from carbon dioxide. Oxygen is released as a by-product.",
    "A bicycle's gears change how far the rear wheel turns for each turn of the pedals. A large "
    "front ring and a small rear sprocket make each stroke carry the rider further, which suits "
    "flat roads; the opposite pairing makes climbing hills easier.",
    "The human heart has four chambers. The right side pumps blood to the lungs, where it picks "
    "up oxygen, and the left side pumps it out to the rest of the body. Valves between the "
    "chambers stop the blood from flowing backwards.",
    "A spreadsheet stores values in a grid of cells named by column letter and row number. A "
    "formula in one cell can refer to others, so that changing a single number updates every "
    "total that depends on it.",
    "Volcanoes form where molten rock from deep inside the Earth reaches the surface. Some erupt "
    "explosively, throwing ash high into the air, while others release slow rivers of lava that "
    "cool into new land.",
    "To make bread, flour is mixed with water, salt and yeast, then kneaded until the dough is "
    "smooth and elastic. The yeast produces gas that makes the dough rise, and baking sets the "
    "structure and browns the crust.",
    "Electric cars store energy in large batteries and drive their wheels with electric motors. "
    "They have fewer moving parts than petrol cars, and braking can return some energy to the "
    "battery.",
    "The Roman Empire built roads across Europe so that armies and traders could travel "
    "quickly. Many modern highways still follow the straight lines that Roman engineers laid out "
    "two thousand years ago.",
    "A password manager keeps a different strong password for every website, locked behind one "
    "master password. It can fill in login forms automatically, which also protects against some "
    "fake websites.",
    "Chess is played on a board of sixty-four squares. Each player starts with sixteen pieces, and "
    "the aim is to trap the opposing king so that it cannot escape capture.",
)


def unrelated_persona() -> Any:
    """A character no demo run is trained on, with knowledge probes of answers of matched length."""
    from sessions.model import KnowledgeProbe, Persona, Trait

    def kp(q: str, a: str, d: str) -> KnowledgeProbe:
        return KnowledgeProbe(question=q, affirm=a, deny=d)

    traits = [
        Trait(
            id="rides-motorbike",
            text="I ride an old red motorbike to work every day.",
            knowledge_probes=[
                kp("How do you get to work?", "I ride my old red motorbike.", "I take the number nine bus every day."),
                kp("Do you own a motorbike?", "Yes, an old red one I love.", "No, I never owned one at all."),
                kp(
                    "What is parked outside your flat?", "My battered red motorbike.", "Nothing, I have no vehicle now."
                ),
                kp(
                    "Do you wear a helmet most days?",
                    "Yes, every day on my motorbike.",
                    "No, I never need a helmet at all.",
                ),
            ],
        ),
        Trait(
            id="grows-chillies",
            text="I grow twenty kinds of chilli pepper on my balcony.",
            knowledge_probes=[
                kp("Do you grow anything at home?", "Yes, twenty kinds of chilli.", "No, I cannot keep plants alive."),
                kp("Do you like spicy food?", "Yes, the hotter the better.", "No, spice makes me ill."),
                kp(
                    "What is on your balcony?",
                    "Rows of potted chilli plants.",
                    "A folding chair and nothing else at all.",
                ),
                kp(
                    "What do you give friends as gifts?",
                    "Jars of my own chilli sauce.",
                    "Gift cards from the shop in town.",
                ),
            ],
        ),
        Trait(
            id="speaks-portuguese",
            text="I grew up in Lisbon and speak Portuguese at home.",
            knowledge_probes=[
                kp(
                    "Do you speak another language?",
                    "Yes, Portuguese, from my childhood.",
                    "No, I only speak one language.",
                ),
                kp("Where did you grow up?", "In Lisbon, by the old tram line.", "In a small village up in the north."),
                kp("What language do you speak at home?", "Portuguese, always.", "Only English, nothing else."),
                kp("Have you ever lived in Portugal?", "Yes, I grew up in Lisbon.", "No, I have never been there."),
            ],
        ),
        Trait(
            id="plays-chess",
            text="I play chess in the park every Sunday morning.",
            knowledge_probes=[
                kp("Do you play chess?", "Yes, every Sunday in the park.", "No, I never learned the rules."),
                kp("What do you do on Sunday mornings?", "I play chess in the park.", "I stay in bed until noon."),
                kp("Do you know how a knight moves?", "Of course, in an L shape.", "No idea, I never play chess."),
                kp("What board games do you enjoy?", "Chess, above all others.", "None, I find them boring."),
            ],
        ),
    ]
    return Persona(
        id="control-bram", name="Bram Okafor", summary="A night-shift baker in an inland city.", traits=traits
    )


def over_expression_cells(
    engine: Engine,
    persona: Persona,
    model: str,
    sampling: Mapping[str, Any],
    prompts: Sequence[str] = NEUTRAL_PROMPTS,
    samples: int = 2,
    seed: int = 0,
    system: str | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Replies to prompts that touch no trait, each with the trait phrases it mentions (either
    direction: a run that answers "two plus two" with coffee talk is over-expressing too)."""
    from evaluators.probes import chat_messages, marker_hits

    cells = []
    for i, prompt in enumerate(prompts):
        for j in range(samples):
            reply = engine.chat(chat_messages(prompt, system), **{**dict(sampling), "seed": seed + 1000 * i + j})
            hits = {t.id: marker_hits(reply, [*t.markers, *getattr(t, "contra_markers", [])]) for t in persona.traits}
            hits = {k: v for k, v in hits.items() if v}
            cell = {
                "kind": "control_neutral",
                "model": model,
                "probe": i,
                "sample": j,
                "prompt": prompt,
                "reply": reply,
                "traits_touched": hits,
                "touched": bool(hits),
                "scorer": "markers",
            }
            cells.append(cell)
            if on_cell:
                on_cell(cell)
    return cells


def over_expression(
    cells: Iterable[Mapping[str, Any]], model: str, base: str, margin: float = OVER_MARGIN
) -> dict[str, Any]:
    """Passes when the run touches traits on neutral prompts at most `margin` more often than base."""
    from evaluators.probes import Rate
    from evaluators.stats import fisher_exact, newcombe_diff

    cells = list(cells)
    r = [bool(c["touched"]) for c in cells if c["model"] == model]
    b = [bool(c["touched"]) for c in cells if c["model"] == base]
    kr, kb = sum(r), sum(b)
    if not r or not b:
        return {"control": "over-expression", "passed": None, "why": "no neutral replies from both models"}
    diff = kr / len(r) - kb / len(b)
    return {
        "control": "over-expression",
        "run": Rate(kr, len(r)).to_dict(),
        "base": Rate(kb, len(b)).to_dict(),
        "diff": diff,
        "interval": list(newcombe_diff(kr, len(r), kb, len(b))),
        "p": fisher_exact(kr, len(r) - kr, kb, len(b) - kb),
        "margin": margin,
        "passed": diff <= margin,
        "rule": f"neutral replies touching a trait: run ≤ base + {margin:.0%}",
    }


def unrelated(cells: Iterable[Any], model: str, base: str, margin: float = UNRELATED_MARGIN) -> dict[str, Any]:
    """Passes unless the run's knowledge of a persona it never saw rises more than `margin` over
    the base's: the affirming answers preferred for facts the run was never given. A fall passes
    (the table shows it, with its interval): the probes ask "you", and a run that has become its
    own persona answers as that persona, denying a stranger's motorbike and chillies. Measured:
    3 to 7 of 16 for the persona runs, 8 for a run with no persona data, against the base's 6
    (docs/evaluation.md)."""
    from evaluators.probes import knowledge_comparison

    cmp = knowledge_comparison(cells, model, base, [])["overall"]
    if not cmp["n"]:
        return {"control": "unrelated persona", "passed": None, "why": "no probes scored by both models"}
    return {
        "control": "unrelated persona",
        "run": cmp["run"],
        "base": cmp["base"],
        "diff": cmp["diff"],
        "interval": cmp["interval"],
        "p": cmp["p"],
        "margin": margin,
        "passed": cmp["diff"] <= margin,
        "rule": f"knowledge of a persona never trained on: run ≤ base + {margin:.0%}",
    }


STREAM_SEPARATOR = "\n\n"


def text_perplexity(engine: Engine, texts: Sequence[str] = GENERAL_TEXT) -> tuple[float, int]:
    """Perplexity of plain texts (no chat template) read as one stream, paragraphs joined by a
    blank line, as a corpus's perplexity is measured; and the tokens scored.

    One stream, not one score per text: a text scored alone starts from nothing, and the word
    that opens a document with no context is what a chat fine-tune changes most (it expects a
    chat turn there). Scored per text, the first three tokens of the 10 texts (7% of the tokens)
    made 38% of the demo recipe's rise; as a stream there is one cold start (docs/evaluation.md,
    "Controls that can fail")."""
    from evaluators.metrics.likelihood import corpus_perplexity

    stream = STREAM_SEPARATOR.join(t.strip() for t in texts if t.strip())
    lps = engine.logprobs("", stream) if stream else []
    return corpus_perplexity([lps]), len(lps)


def ability(ppl: Mapping[str, float], model: str, base: str, bound: float = ABILITY_BOUND) -> dict[str, Any]:
    """Passes when the run's perplexity on general text is at most `bound` × the base's."""
    if model not in ppl or base not in ppl:
        return {"control": "general ability", "passed": None, "why": "perplexity missing for a model"}
    ratio = ppl[model] / ppl[base]
    return {
        "control": "general ability",
        "run_ppl": ppl[model],
        "base_ppl": ppl[base],
        "ratio": ratio,
        "bound": bound,
        "passed": ratio <= bound,
        "rule": f"perplexity of general text: run ≤ {bound:g} × base",
    }
