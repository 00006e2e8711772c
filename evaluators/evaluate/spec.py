"""What an EvalSpec may say, checked before any model loads, and turned into a frozen job spec.

An evaluation in the session file:

    [[evals]]
    id = "odile-traits"
    kind = "traits"                       # reference | traits | judge | tailoring | perplexity_matrix | drift
    models = ["bundled", "bundled+persona"]
    samples = 3                           # kind-specific keys sit beside id/kind/models

`models` entries are engine ids of the session (`[[engines]]`), or a model named directly: a
`bundled:` name, a `.gguf` file (llama.cpp) or an HF model folder (transformers); paths are
relative to the session file. A `+persona` suffix gives that model the persona as its system
prompt (a prompt-only baseline); the row is labelled with the entry as written.

Keys by kind (default in brackets; "all kinds" keys apply wherever they are listed):

reference — next-turn metrics on held-out chat data (persona_chat or chat_demos records):
    data         dataset id (its <workspace>/datasets/<id>.heldout.jsonl) or a JSONL file [required]
    samples      examples scored, 0 = all [100]
    max_tokens [64]  temperature [0.0 = greedy]  top_p [0.95]  seed [0]
    bertscore    compute BERTScore P/R/F1 [true]
    perplexity   perplexity of the reference reply [true]
    hits         hits@1 against distractors from other conversations [true]
    distractors  distractors per question [19]
    rank_by      hits@1 ranks by "mean" or "total" log-likelihood ["mean"]
traits — knowledge vs expression per trait of one persona:
    persona      persona id [the session's only persona]
    samples      replies per expression probe [3]
    max_tokens [96]  temperature [0.7]  top_p [0.95]  seed [0]
    knowledge    run the knowledge probes [true];  expression  run the expression probes [true]
    knowledge_by "mean" (per token) or "total" log-probability of the answers ["mean"]; the
                 summed score favours the shorter answer (docs/evaluation.md has the measurement)
    controls     also run the three controls, each model after the first against the first:
                 an unrelated persona's knowledge probes, neutral prompts, general-text perplexity
                 [false]
    neutral_samples  replies per neutral prompt [2]
    unrelated_margin  rise over the base allowed on the unrelated persona's knowledge [0.15]
    over_margin  how much more often than base the run may touch a trait on neutral prompts [0.10]
    ability_bound  the run's general-text perplexity may be at most this times the base's [1.25]
    The first model is the base: every later model is compared with it (knowledge: exact
    McNemar, paired on probes; expression: Fisher's exact per trait, Holm across traits); the
    labeller decides the headline expression verdict and is printed with the table.
    labeller     "judge", "fallback" (markers + MiniLM similarity) or "markers"
                 ["judge" when `judge` is set, else "markers"]
    judge        engine id or model that labels expression replies [""]
    judge_max_tokens  room for the judge's answer (reasons + the label line) [160]
    rubric       a file replacing evaluators/prompts/expression_label.txt [""]
    system       "none" or "persona": the system prompt every model gets ["none"]
judge — pairwise comparison of each model against the first one:
    persona, system, max_tokens [96], temperature [0.7], top_p, seed as for traits
    judge        engine id, model, or "fallback" (persona criterion only) [required]
    judge_max_tokens [160]
    questions    prompts to answer [the persona's expression probes]
    limit        at most this many questions, 0 = all [0]
    samples      replies per question per model [1]
    criteria     any of "persona", "quality" [["persona", "quality"]]
    prompts      table criterion -> prompt file replacing the packaged one [{}]
tailoring — persona-tailored responses, chosen- and rejected-persona prompts apart:
    data         tailoring JSONL (prompt, chosen_persona_*, rejected_persona_*) or dataset id [required]
    persona_field "retr" or "gold": which personas of the data to use ["retr"]
    no_persona   model entries that get the prompt without the persona [[]]
    samples      data rows used, 0 = all [50]
    judge, judge_max_tokens, criteria [["personalization", "quality"]], prompts, max_tokens [96],
    temperature [0.0], top_p, seed as above
    fewshot      JSONL of worked examples (prompt, chosen, *_persona_*) put before the input [""]
    fewshot_models  model entries that get those examples (a few-shot prompt-only baseline) [[]]
perplexity_matrix — every model on held-out text of every format:
    data         list of dataset ids or JSONL files (any record shape) [required]
    samples      records per dataset, 0 = all [100]
drift — does the persona hold over a long conversation (evaluators.drift):
    persona, system, knowledge_by, labeller, judge, judge_max_tokens, rubric as for traits
    turns        turns per conversation [16];  conversations  per model [3]
    probe_turns  turns whose state is probed on a fork, e.g. [1, 4, 8, 16]; turn 1 is always
                 added [[] = 1, 2, 4, 8, ... and the last]
    probes       knowledge and expression probes per trait asked at each probed turn, 0 = all [2]
    samples      replies per expression prompt [1];  knowledge, expression  as for traits [true]
    user         "spc" (replay a Synthetic-Persona-Chat user's turns) or an engine id or model
                 that plays the user ["spc"]
    data         (user "spc") the SPC CSV, its folder, or a persona_chat dataset id [required]
    side         (user "spc") whose turns are replayed, "1" or "2" ["1"]
    user_prompt  (a simulated user) a file replacing evaluators/prompts/drift_user.txt [""]
    user_max_tokens [48]  max_tokens [64]  temperature [0.7]  top_p [0.95]  seed [0]
    drop         report the first turn whose rate is below this fraction of turn 1's [0.5]

Free keys kept but not read: results (written after a run: job id, time, summary), note,
experiment.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessions.model import EngineSpec, EvalSpec, Persona, Session

if TYPE_CHECKING:
    from sessions.store import SessionFile

KINDS = ("reference", "traits", "judge", "tailoring", "perplexity_matrix", "drift")
FREE_KEYS = ("results", "note", "experiment")
PERSONA_SUFFIX = "+persona"
FALLBACK = "fallback"


@dataclass(frozen=True)
class Key:
    type: str  # int | float | bool | str | list | table
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    required: bool = False


def _sampling(max_tokens: int, temperature: float) -> dict[str, Key]:
    return {
        "max_tokens": Key("int", max_tokens, minimum=1),
        "temperature": Key("float", temperature, minimum=0),
        "top_p": Key("float", 0.95, minimum=0.01),
        "seed": Key("int", 0, minimum=0),
    }


_PERSONA = {"persona": Key("str", ""), "system": Key("str", "none", ("none", "persona"))}

KEYS: dict[str, dict[str, Key]] = {
    "reference": {
        "data": Key("str", "", required=True),
        "samples": Key("int", 100, minimum=0),
        **_sampling(64, 0.0),
        "bertscore": Key("bool", True),
        "perplexity": Key("bool", True),
        "hits": Key("bool", True),
        "distractors": Key("int", 19, minimum=1),
        "rank_by": Key("str", "mean", ("mean", "total")),
    },
    "traits": {
        **_PERSONA,
        "samples": Key("int", 3, minimum=1),
        **_sampling(96, 0.7),
        "knowledge": Key("bool", True),
        "expression": Key("bool", True),
        "knowledge_by": Key("str", "mean", ("mean", "total")),
        "controls": Key("bool", False),
        "neutral_samples": Key("int", 2, minimum=1),
        "unrelated_margin": Key("float", 0.15, minimum=0),
        "over_margin": Key("float", 0.10, minimum=0),
        "ability_bound": Key("float", 1.25, minimum=1),
        "labeller": Key("str", "", ("", "judge", "fallback", "markers")),
        "judge": Key("str", ""),
        "judge_max_tokens": Key("int", 160, minimum=1),
        "rubric": Key("str", ""),
    },
    "judge": {
        **_PERSONA,
        **_sampling(96, 0.7),
        "judge": Key("str", "", required=True),
        "judge_max_tokens": Key("int", 160, minimum=1),
        "questions": Key("list", []),
        "limit": Key("int", 0, minimum=0),
        "samples": Key("int", 1, minimum=1),
        "criteria": Key("list", ["persona", "quality"], ("persona", "quality")),
        "prompts": Key("table", {}, ("persona", "quality")),
    },
    "tailoring": {
        "data": Key("str", "", required=True),
        "persona_field": Key("str", "retr", ("retr", "gold")),
        "no_persona": Key("list", []),
        "samples": Key("int", 50, minimum=0),
        **_sampling(96, 0.0),
        "judge": Key("str", "", required=True),
        "judge_max_tokens": Key("int", 160, minimum=1),
        "criteria": Key("list", ["personalization", "quality"], ("personalization", "quality")),
        "prompts": Key("table", {}, ("personalization", "quality")),
        "fewshot": Key("str", ""),
        "fewshot_models": Key("list", []),
    },
    "perplexity_matrix": {
        "data": Key("list", [], required=True),
        "samples": Key("int", 100, minimum=0),
    },
    "drift": {
        **_PERSONA,
        "turns": Key("int", 16, minimum=1),
        "conversations": Key("int", 3, minimum=1),
        "probe_turns": Key("ints", [], minimum=1),
        "probes": Key("int", 2, minimum=0),
        "samples": Key("int", 1, minimum=1),
        "knowledge": Key("bool", True),
        "expression": Key("bool", True),
        "knowledge_by": Key("str", "total", ("total", "mean")),
        "labeller": Key("str", "", ("", "judge", "fallback", "markers")),
        "judge": Key("str", ""),
        "judge_max_tokens": Key("int", 160, minimum=1),
        "rubric": Key("str", ""),
        "user": Key("str", "spc"),
        "data": Key("str", ""),
        "side": Key("str", "1", ("1", "2")),
        "user_prompt": Key("str", ""),
        "user_max_tokens": Key("int", 48, minimum=1),
        **_sampling(64, 0.7),
        "drop": Key("float", 0.5, minimum=0),
    },
}


class EvalSpecError(ValueError):
    """An evaluation that cannot run as written; `problems` lists every (field, message)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = len(problems) - 1
        super().__init__(problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""))


def _type_ok(key: Key, value: Any) -> bool:
    if key.type == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if key.type == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if key.type == "bool":
        return isinstance(value, bool)
    if key.type == "str":
        return isinstance(value, str)
    if key.type == "list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if key.type == "table":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if key.type == "ints":
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    raise AssertionError(key.type)


_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text in quotes",
    "list": 'a list of texts, like ["a", "b"]',
    "table": 'a table of texts, like { persona = "my_prompt.txt" }',
    "ints": "a list of whole numbers, like [1, 4, 8]",
}


def check_settings(spec: EvalSpec) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The spec's settings with defaults filled in, and every (key, problem) found."""
    problems: list[tuple[str, str]] = []
    if spec.kind not in KINDS:
        problems.append(("kind", f"{spec.kind!r} is not an evaluation kind; use one of: {', '.join(KINDS)}."))
        return {}, problems
    schema = KEYS[spec.kind]
    settings: dict[str, Any] = {}
    for name, key in schema.items():
        if name not in spec.extra:
            if key.required:
                problems.append((name, f"is missing; a {spec.kind} evaluation needs it."))
            settings[name] = copy.deepcopy(key.default)
            continue
        value = spec.extra[name]
        if not _type_ok(key, value):
            problems.append((name, f"must be {_TYPE_WORDS[key.type]}, not {value!r}."))
            settings[name] = copy.deepcopy(key.default)
            continue
        if key.type == "float":
            value = float(value)
        if key.type == "ints":
            if key.minimum is not None and any(v < key.minimum for v in value):
                problems.append((name, f"must hold numbers of at least {key.minimum:g}, not {value!r}."))
        elif key.minimum is not None and value < key.minimum:
            problems.append((name, f"must be at least {key.minimum:g}, not {value!r}."))
        if key.choices:
            given = value if key.type == "list" else list(value) if key.type == "table" else [value]
            bad = [v for v in given if v not in key.choices]
            if bad:
                shown = ", ".join(repr(c) for c in key.choices if c)
                problems.append((name, f"{bad[0]!r} is not allowed here; use {shown}."))
        if key.required and value in ("", []):
            problems.append((name, f"is empty; a {spec.kind} evaluation needs it."))
        settings[name] = value
    for name in spec.extra:
        if name not in schema and name not in FREE_KEYS:
            known = ", ".join(sorted(schema))
            problems.append((name, f"is not a setting of a {spec.kind} evaluation; known: {known}."))
    if not spec.models:
        problems.append(("models", "is empty; name at least one engine id or model."))
    if spec.kind in ("judge", "tailoring") and 0 < len(spec.models) < 2:
        problems.append(
            ("models", f"a {spec.kind} evaluation compares models: name at least two (the first is the baseline).")
        )
    if spec.kind == "drift":
        late = [t for t in settings["probe_turns"] if t > settings["turns"]]
        if late:
            problems.append(
                (
                    "probe_turns",
                    f"turn {late[0]} is after the last turn ({settings['turns']}); probe turns must lie within turns.",
                )
            )
    if spec.kind in ("traits", "drift"):
        if settings["labeller"] == "judge" and not settings["judge"]:
            problems.append(
                (
                    "labeller",
                    'is "judge" but no judge is named; set judge = "<engine id>" or use "fallback" or "markers".',
                )
            )
        if not settings["labeller"]:
            settings["labeller"] = "judge" if settings["judge"] else "markers"
        if not settings["knowledge"] and not settings["expression"]:
            problems.append(("knowledge", "and expression are both false; there is nothing to run."))
    if spec.kind == "judge" and settings["judge"] == FALLBACK and "quality" in settings["criteria"]:
        problems.append(
            (
                "criteria",
                'includes "quality", which the judge-free fallback cannot judge; name a judge engine or drop "quality".',
            )
        )
    if spec.kind == "tailoring" and settings["judge"] == FALLBACK and "quality" in settings["criteria"]:
        problems.append(
            (
                "criteria",
                'includes "quality", which the judge-free fallback cannot judge; name a judge engine or drop "quality".',
            )
        )
    if spec.kind == "tailoring":
        for name in ("no_persona", "fewshot_models"):
            unknown = [m for m in settings[name] if m not in spec.models]
            if unknown:
                problems.append((name, f"{unknown[0]!r} is not one of this evaluation's models."))
        if settings["fewshot_models"] and not settings["fewshot"]:
            problems.append(("fewshot", "is empty but fewshot_models names models; give the JSONL of worked examples."))
    return settings, problems


# ----------------------------------------------------------------------------- models and data


@dataclass
class ModelEntry:
    """One row of the results: an engine and whether it gets the persona as system prompt."""

    label: str
    engine: EngineSpec
    persona_prompt: bool = False

    def to_plain(self) -> dict[str, Any]:
        engine = {k: v for k, v in dataclasses.asdict(self.engine).items() if v is not None}
        return {"label": self.label, "persona_prompt": self.persona_prompt, "engine": engine}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> ModelEntry:
        return cls(str(data["label"]), EngineSpec(**data["engine"]), bool(data.get("persona_prompt", False)))


Resolver = Callable[[str], "EngineSpec | None"]


def resolve_model(session: Session, ref: str, base: Path, resolve: Resolver | None = None) -> EngineSpec:
    """An engine id, something `resolve` knows (e.g. a run's export), or a model named directly."""
    engine = session.engine(ref)
    if engine is not None:
        return copy.deepcopy(engine)
    if resolve is not None:
        found = resolve(ref)
        if found is not None:
            return found
    if ref.startswith("bundled:"):
        return EngineSpec(id=ref, kind="llamacpp", model=ref)
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return EngineSpec(id=ref, kind="llamacpp", model=str(path.resolve()))
    if path.is_dir() and (path / "config.json").is_file():
        return EngineSpec(id=ref, kind="transformers", model=str(path.resolve()))
    known = ", ".join(e.id for e in session.engines) or "none yet"
    raise ValueError(
        f"{ref!r} is not an engine id of the session (engines: {known}), a bundled: model, a "
        ".gguf file or an HF model folder; add an [[engines]] entry or fix the name."
    )


def model_entry(session: Session, ref: str, base: Path, resolve: Resolver | None = None) -> ModelEntry:
    core, persona = (ref[: -len(PERSONA_SUFFIX)], True) if ref.endswith(PERSONA_SUFFIX) else (ref, False)
    return ModelEntry(ref, resolve_model(session, core, base, resolve), persona)


def data_file(ref: str, base: Path, workspace: Path) -> Path:
    """A dataset id's held-out file, or a JSONL file (relative to the session file)."""
    from sessions.workspace import heldout_path, id_problem

    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        return path.resolve()
    if id_problem(ref) is None:
        held = heldout_path(workspace, ref)
        if held.is_file():
            return held.resolve()
        raise ValueError(
            f"{ref!r} is neither a file nor a built dataset (no {held}); build the dataset "
            "first, or give the path of a JSONL file."
        )
    raise ValueError(f"the data file {path} does not exist; fix the path.")


def pick_persona(session: Session, persona_id: str) -> Persona:
    if persona_id:
        persona = session.persona(persona_id)
        if persona is None:
            known = ", ".join(p.id for p in session.personas) or "none"
            raise ValueError(f"there is no persona {persona_id!r} (personas: {known}).")
        return persona
    if len(session.personas) == 1:
        return session.personas[0]
    raise ValueError(
        "the session has "
        + ("no personas" if not session.personas else "several personas")
        + '; name one with persona = "<id>".'
    )


# ----------------------------------------------------------------------------- the job spec


def build_job_spec(session_file: SessionFile, eval_id: str, resolve: Resolver | None = None) -> dict[str, Any]:
    """The frozen inputs of an eval job: settings with defaults, models as engine specs, data as
    absolute paths, the persona as it is now. Raises EvalSpecError listing every problem, each
    naming the session file, its line where known, and the field.
    """
    from sessions import codec
    from sessions.validate import key_lines, line_for

    session: Session = session_file.session
    index = next((i for i, e in enumerate(session.evals) if e.id == eval_id), None)
    if index is None:
        known = ", ".join(e.id for e in session.evals) or "none"
        raise EvalSpecError([f"{session_file.path}: there is no evaluation {eval_id!r} (evaluations: {known})."])
    spec = session.evals[index]
    lines = key_lines(session_file.text) if getattr(session_file, "text", None) else {}
    problems: list[str] = []

    def add(key: str | tuple, message: str) -> None:
        keys = ("evals", index, *((key,) if isinstance(key, str) else key))
        line = line_for(lines, keys) if lines else None
        where = f"{session_file.path}:{line}" if line else str(session_file.path)
        field = f"evals[{index}]." + ".".join(str(k) if not isinstance(k, int) else f"[{k}]" for k in keys[2:])
        problems.append(f"{where}: {field.replace('.[', '[')}: {message}")

    settings, raw = check_settings(spec)
    for key, message in raw:
        add(key, message)
    base = Path(session_file.path).resolve().parent
    workspace = Path(session_file.workspace).resolve()
    models = []
    for i, ref in enumerate(spec.models):
        if ref.endswith(PERSONA_SUFFIX) and spec.kind not in ("traits", "judge", "drift"):
            add(
                ("models", i),
                f"the {PERSONA_SUFFIX} suffix applies to traits, judge and drift evaluations only; drop it here.",
            )
            continue
        try:
            models.append(model_entry(session, ref, base, resolve))
        except ValueError as e:
            add(("models", i), str(e))
    job: dict[str, Any] = {
        "session": str(Path(session_file.path).resolve()),
        "eval": spec.id,
        "eval_kind": spec.kind,
        "models": [m.to_plain() for m in models],
    }
    if "persona" in settings and spec.kind in ("traits", "judge", "drift"):
        try:
            persona = pick_persona(session, settings["persona"])
            job["persona"] = codec.to_plain(persona)
            settings["persona"] = persona.id
            if spec.kind in ("traits", "drift") and not any(
                t.knowledge_probes or t.expression_probes for t in persona.traits
            ):
                add(
                    "persona",
                    f"persona {persona.id!r} has no knowledge or expression probes; write some in its traits first.",
                )
            if (
                spec.kind == "judge"
                and not settings["questions"]
                and not any(t.expression_probes for t in persona.traits)
            ):
                add(
                    "questions",
                    f"is empty and persona {persona.id!r} has no expression probes to ask instead; list some questions.",
                )
        except ValueError as e:
            add("persona", str(e))
    judge_ref = settings.get("judge", "")
    if judge_ref and judge_ref != FALLBACK:
        try:
            job["judge"] = {
                "label": judge_ref,
                "engine": ModelEntry(judge_ref, resolve_model(session, judge_ref, base, resolve)).to_plain()["engine"],
            }
        except ValueError as e:
            add("judge", str(e))
    if spec.kind == "drift":
        from evaluators.drift import freeze

        freeze(settings, session, base, resolve, add, job)
    if spec.kind in ("reference", "tailoring"):
        if settings["data"]:
            try:
                settings["data_path"] = str(data_file(settings["data"], base, workspace))
            except ValueError as e:
                add("data", str(e))
        if settings.get("fewshot"):
            try:
                settings["fewshot_path"] = str(data_file(settings["fewshot"], base, workspace))
            except ValueError as e:
                add("fewshot", str(e))
    if spec.kind == "perplexity_matrix":
        paths = []
        for i, ref in enumerate(settings["data"]):
            try:
                paths.append(str(data_file(ref, base, workspace)))
            except ValueError as e:
                add(("data", i), str(e))
        settings["data_path"] = paths
    from evaluators.judge import load_prompt

    overrides = dict(settings.get("prompts") or {})
    if settings.get("rubric"):
        overrides["expression"] = settings["rubric"]
    for name, value in overrides.items():
        path = (base / Path(value).expanduser()).resolve()
        try:
            load_prompt(name, path)  # checks the file and its placeholders now, not mid-job
        except ValueError as e:
            add("rubric" if name == "expression" else ("prompts", name), str(e))
        if name == "expression":
            settings["rubric"] = str(path)
        else:
            settings["prompts"][name] = str(path)
    if problems:
        raise EvalSpecError(problems)
    job["settings"] = settings
    return job
