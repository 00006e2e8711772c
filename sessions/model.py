"""The session model: plain typed objects, no I/O.

A session is what a person edits and keeps in git: personas with their traits and probes, and
the specs of the work done on them (datasets, runs, evaluations) plus hand labels. Reading and
writing TOML lives in `sessions.store`; validation in `sessions.validate`. Every object keeps the
keys it does not know in `extra`, so a newer tool's or a person's additions survive a save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sessions.run_spec import LoraSettings, TrainingSettings

SCHEMA_VERSION = 1

# Character Card V2 fields that have no first-class place in Persona; kept verbatim in
# Persona.card so an imported card exports unchanged.
CARD_EXTRA_FIELDS = (
    "scenario",
    "first_mes",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "character_book",
    "tags",
    "creator",
    "character_version",
    "extensions",
)


@dataclass
class KnowledgeProbe:
    """A question about a trait with an answer that affirms it and one that denies it.

    The model "knows" the trait when log P(affirm) > log P(deny) under it: no judge needed.
    """

    question: str
    affirm: str
    deny: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trait:
    id: str
    text: str
    knowledge_probes: list[KnowledgeProbe] = field(default_factory=list)
    # Open prompts where the trait could show in a reply.
    expression_probes: list[str] = field(default_factory=list)
    # Phrases whose presence suggests the trait was expressed (a judge-free fallback), and phrases
    # that contradict it ("I love coffee" for "tea, not coffee"); both match whole words and their
    # inflections, and a negation just before a phrase turns it to the other side.
    markers: list[str] = field(default_factory=list)
    contra_markers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Persona:
    id: str
    name: str
    summary: str = ""
    style: str = ""  # speaking style
    facts: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # example lines in the character's voice
    traits: list[Trait] = field(default_factory=list)
    # Character Card V2 fields without a first-class place (see CARD_EXTRA_FIELDS).
    card: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def trait(self, trait_id: str) -> Trait | None:
        return next((t for t in self.traits if t.id == trait_id), None)


def persona_system_prompt(persona: Persona) -> str:
    """A persona as a system prompt: who, what about them, how they speak.

    The one rendering: Chat's "persona on", the exported Modelfile's SYSTEM and the scored
    prompt-only baselines (`<model>+persona`) all use it, so the baseline a person chats with is
    the one that is scored.
    """
    summary = (persona.summary or "").strip()
    parts = [f"You are {persona.name}." + (f" {summary}" if summary else "")]
    facts = [t.text.strip() for t in persona.traits if t.text.strip()]
    facts += [f.strip() for f in persona.facts if f.strip()]
    if facts:
        parts.append("About you:\n" + "\n".join(f"- {f}" for f in facts))
    if (persona.style or "").strip():
        parts.append(f"How you speak: {persona.style.strip()}")
    return "\n".join(parts)


@dataclass
class EngineSpec:
    """A named way to generate text: a GGUF through llama.cpp, an HF model, or an endpoint.

    API keys never live here: `api_key_env` names the environment variable that holds one.
    """

    id: str
    kind: str  # "llamacpp" | "transformers" | "openai"
    model: str = "bundled:smollm2-135m-instruct"
    adapter: str = ""  # PEFT adapter dir (transformers) or LoRA GGUF (llamacpp)
    base_url: str = ""  # openai kind
    api_key_env: str = ""  # openai kind: the variable's *name*
    n_ctx: int = 2048
    threads: int = 0  # 0 = library default
    seed: int | None = None  # llamacpp: the context's default sampling seed (a request's seed wins)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetSpec:
    """How to build one training set; its examples live in <workspace>/datasets/<id>.jsonl."""

    id: str
    format: str  # chat_demos | first_person | synthetic_docs | persona_chat | tailoring_sft | tailoring_dpo
    persona: str = ""  # persona id (empty for imported formats)
    generator: str = "template"  # template | llm | import
    size: int = 100
    seed: int = 3407
    engine: str = ""  # EngineSpec id for the llm generator / persona inference
    persona_in_system_prompt: bool = False  # chat_demos: keep the persona in the prompt?
    held_out: float = 0.1  # fraction kept out of training
    source: str = ""  # path of imported data (persona_chat CSV, tailoring JSONL/CSV)
    variant: str = ""  # persona_chat: own | both | context
    context_lines: int = 0  # persona_chat "context" variant: first N lines
    mix: list[str] = field(default_factory=list)  # ids of datasets mixed into this one
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """A training run. Its settings are filled in by the training issue; unknown keys are kept."""

    id: str
    base_model: str = "bundled:smollm2-135m-instruct"
    datasets: list[str] = field(default_factory=list)
    method: str = "sft"  # sft | dpo
    backend: str = "hf"  # hf | unsloth | openai
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSpec:
    id: str
    kind: str = ""  # reference | traits | judge | tailoring | perplexity_matrix
    models: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Annotation:
    """One person's labels for one output. Saved the moment it is given."""

    output: str  # "<job-id>:<output-index>" or "chat:<queue-line>"
    annotator: str
    trait_labels: dict[str, str] = field(default_factory=dict)  # trait id -> expressed|not_shown|contradicted
    consistency: int = 0  # 1..5, 0 = not rated
    note: str = ""
    time: str = ""  # ISO 8601
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    name: str = ""
    schema: int = SCHEMA_VERSION
    personas: list[Persona] = field(default_factory=list)
    engines: list[EngineSpec] = field(default_factory=list)
    datasets: list[DatasetSpec] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    evals: list[EvalSpec] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def persona(self, persona_id: str) -> Persona | None:
        return next((p for p in self.personas if p.id == persona_id), None)

    def dataset(self, dataset_id: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.id == dataset_id), None)

    def run(self, run_id: str) -> RunSpec | None:
        return next((r for r in self.runs if r.id == run_id), None)

    def engine(self, engine_id: str) -> EngineSpec | None:
        return next((e for e in self.engines if e.id == engine_id), None)
