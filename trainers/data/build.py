"""Building a DatasetSpec: format x generator, then dedupe, split, statistics, JSONL files.

    result = build_dataset(session, spec, workspace, base_dir=session_file.path.parent)

writes `<workspace>/datasets/<id>.jsonl` (training examples), `<id>.heldout.jsonl` (the seeded
held-out share) and `<id>.stats.json` (counts, duplicates removed, malformed and skipped items,
token lengths under the base model's tokenizer, distinct-2, near-duplicate rate). The session is
never written: a bad spec or bad input raises `DatasetError` (one sentence) before any file is.

Which generator a format takes: chat_demos, first_person and synthetic_docs are made from a
persona by `template` (offline, seeded) or `llm` (a teacher engine); chat_demos also by `general`
(the base model's own replies to ordinary prompts, no persona: mixed into a run beside persona
data so the run keeps answering ordinary questions; trainers.data.generate.general); persona_chat and
tailoring_* are imported from `source` (tailoring may call an engine to infer personas). A spec
with `mix` is the union of other built datasets (train with train, held-out with held-out).

Options that have no field of their own live in `DatasetSpec.extra`: `system_prompt` (chat_demos,
neutral system message), `side` (persona_chat), `persona_source`, `both_sides` (tailoring),
`strict` (imports: refuse broken rows), `base_model` (for token statistics), `token_stats`
(false skips loading the tokenizer), `llm` (the llm generator's table of teacher settings, see
trainers.data.generate.llm_settings; the older `temperature` and `max_attempts` keys still count).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessions.model import DatasetSpec, EngineSpec, Persona, Session
from trainers.data import reader as data_reader
from trainers.data.formats import (
    FORMAT_NAMES,
    IMPORT_FORMATS,
    PERSONA_FORMATS,
    SHAPES,
    format_module,
    record_text,
    shape_of_record,
    target_text,
    to_messages,
)
from trainers.data.quality import distinct_n, near_duplicate_report, persona_fields, text_quality

DEFAULT_BASE_MODEL = "bundled:smollm2-135m-instruct"
DEFAULT_ENGINE = EngineSpec(id="bundled", kind="llamacpp", model=DEFAULT_BASE_MODEL)
GENERATORS = ("template", "llm", "general", "import")
# Near-duplicate statistics are exact but quadratic in the worst case; past this many examples
# they are computed on a seeded sample.
NEAR_DUP_SAMPLE = 1500
TOKEN_SAMPLE = 500

Progress = Callable[[int, int, str], None]


class DatasetError(ValueError):
    """A dataset cannot be built as specified; one sentence naming the field and the fix."""


@dataclass
class BuildResult:
    spec: DatasetSpec
    train_path: Path
    heldout_path: Path
    stats_path: Path
    stats: dict[str, Any]


# --- checking a spec -----------------------------------------------------------------------------


def _persona_is_empty(p: Persona) -> bool:
    return not (p.summary.strip() or p.facts or p.traits or p.examples or p.style.strip())


def mix_spec(session: Session, new_id: str, parts: list[str], workspace: str | Path | None = None) -> DatasetSpec:
    """A new dataset spec that is the union of `parts` (size 0: all their examples), not yet added.

    Refuses, in one sentence, an id that is taken or unsafe, fewer than two parts, parts that are
    not datasets of the session, and (given the `workspace`) parts not built yet; mixing record
    shapes is refused when it is built.
    """
    from sessions.workspace import id_problem

    parts = [p.strip() for p in parts if p.strip()]
    if session.dataset(new_id) is not None:
        raise DatasetError(f"A dataset {new_id!r} already exists; choose another id for the mix.")
    problem = id_problem(new_id)
    if problem:
        raise DatasetError(f"The id {new_id!r} {problem}; ids become file names.")
    if len(set(parts)) < 2:
        raise DatasetError("A mix needs at least two different datasets; list them separated by commas.")
    missing = [p for p in parts if session.dataset(p) is None]
    if missing:
        known = ", ".join(d.id for d in session.datasets) or "none"
        raise DatasetError(f"{missing[0]!r} is not a dataset of this session (it has: {known}).")
    first = session.dataset(parts[0])
    assert first is not None  # every part was checked just above
    spec = DatasetSpec(
        id=new_id,
        format=first.format,
        persona="",
        generator=first.generator,
        size=0,
        held_out=first.held_out,
        seed=first.seed,
        mix=list(dict.fromkeys(parts)),
    )
    if workspace is not None:
        check_spec(session, spec, workspace)
    return spec


def check_spec(session: Session, spec: DatasetSpec, workspace: str | Path | None = None) -> Persona | None:
    """The persona the spec builds from (None for imports and mixes); DatasetError when it cannot be built."""
    where = f"Dataset {spec.id!r}"
    if spec.mix:
        for other in spec.mix:
            if other == spec.id:
                raise DatasetError(f"{where} lists itself in mix; remove {spec.id!r} from its mix list.")
            if session.dataset(other) is None:
                raise DatasetError(
                    f"{where} mixes {other!r}, which is not a dataset of this session; fix its mix list."
                )
            if workspace is not None and not data_reader.is_built(workspace, other):
                raise DatasetError(f"{where} mixes {other!r}, which has not been built yet; build {other!r} first.")
        return None
    if spec.format not in FORMAT_NAMES:
        raise DatasetError(f"{where} has format {spec.format!r}; use one of {', '.join(FORMAT_NAMES)}.")
    if not 0 <= spec.held_out < 1:
        raise DatasetError(f"{where} has held_out {spec.held_out}; use a fraction from 0 up to (not including) 1.")
    if spec.format in IMPORT_FORMATS:
        if not spec.source.strip():
            raise DatasetError(
                f"{where} ({spec.format}) imports a file but its source is empty; set source to the "
                f"{'Synthetic-Persona-Chat CSV' if spec.format == 'persona_chat' else 'preference JSONL or CSV'}."
            )
        if spec.size < 0:
            raise DatasetError(f"{where} has size {spec.size}; use 0 for every example or a positive number.")
        return None
    if spec.generator == "general":
        if spec.format != "chat_demos":
            raise DatasetError(
                f"{where} ({spec.format}) uses generator 'general', which writes chats; set its format to chat_demos."
            )
        if spec.size < 1:
            raise DatasetError(f"{where} has size {spec.size}; ask for at least one general reply.")
        return None
    if spec.generator not in ("template", "llm"):
        raise DatasetError(
            f"{where} ({spec.format}) uses generator {spec.generator!r}; use 'template', 'llm' or (chat_demos) 'general'."
        )
    if spec.size < 1:
        raise DatasetError(f"{where} has size {spec.size}; ask for at least one example.")
    if not spec.persona.strip():
        raise DatasetError(f"{where} names no persona; set its persona to one of the session's persona ids.")
    persona = session.persona(spec.persona)
    if persona is None:
        known = ", ".join(p.id for p in session.personas) or "none"
        raise DatasetError(
            f"{where} names persona {spec.persona!r}, which the session does not have (it has: {known})."
        )
    if _persona_is_empty(persona):
        raise DatasetError(
            f"Persona {persona.id!r} is empty (no summary, traits, facts or example lines); write the persona before building {spec.id!r}."
        )
    if not persona.traits:
        raise DatasetError(
            f"Persona {persona.id!r} has no traits, and the {spec.format} format builds its examples "
            "around traits; add at least one trait in the Personas pane."
        )
    if spec.generator == "llm":
        from trainers.data.generate.llm_settings import teacher_settings

        try:
            teacher_settings(spec.id, spec.extra)
        except ValueError as e:
            raise DatasetError(str(e)) from None
    if spec.generator == "llm" and spec.engine and session.engine(spec.engine) is None:
        known = ", ".join(e.id for e in session.engines) or "none"
        raise DatasetError(f"{where} names engine {spec.engine!r}, which the session does not have (it has: {known}).")
    return persona


def engine_spec_for(session: Session, spec: DatasetSpec) -> EngineSpec:
    """The teacher: the spec's engine, else the session's first engine, else the bundled model."""
    if spec.engine:
        found = session.engine(spec.engine)
        if found is None:
            raise DatasetError(f"Dataset {spec.id!r} names engine {spec.engine!r}, which the session does not have.")
        return found
    return session.engines[0] if session.engines else DEFAULT_ENGINE


def engine_label(e: EngineSpec) -> str:
    where = e.base_url or e.model
    return f"{e.id!r} ({e.kind}, {where})"


def base_model_for(session: Session, spec: DatasetSpec) -> str:
    """Whose tokenizer measures the examples: extra.base_model, a run that trains on it, or the bundled model."""
    explicit = str(spec.extra.get("base_model", "") or "")
    if explicit:
        return explicit
    for run in session.runs:
        if spec.id in run.datasets:
            return run.base_model
    return DEFAULT_BASE_MODEL


def resolve_source(spec: DatasetSpec, base_dir: str | Path | None) -> Path:
    path = Path(spec.source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


# --- generating -----------------------------------------------------------------------------------


def _open_teacher(
    session: Session,
    spec: DatasetSpec,
    engine_opener: Callable[[EngineSpec], Any] | None,
    default_temperature: float = 0.7,
    settings: Any = None,
):
    from trainers.data.generate.llm import Teacher, TeacherError

    espec = engine_spec_for(session, spec)
    label = engine_label(espec)
    if engine_opener is None:
        from engines import open_engine

        engine_opener = open_engine
    try:
        engine = engine_opener(espec)
    except Exception as e:  # noqa: BLE001 - engines raise EngineError; anything else is reported the same way
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, ValueError):  # an EngineError: already one sentence with its fix
            raise TeacherError(f"Teacher engine {label}: {msg}") from e
        raise TeacherError(f"Teacher engine {label} cannot be opened ({msg.rstrip('.')}); fix its settings.") from e
    if settings is not None:
        return engine, Teacher(engine, label, spec.seed, settings=settings)
    temperature = float(spec.extra.get("temperature", default_temperature))
    return engine, Teacher(engine, label, spec.seed, temperature=temperature)


def _llm_generate(
    session: Session,
    spec: DatasetSpec,
    persona: Persona,
    base_dir: Any,
    progress: Progress,
    cancelled: Callable[[], bool],
    engine_opener: Any,
    log: Callable[[str], None],
    workspace: Path | None,
    work_dir: Path | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The llm generator (trainers.data.generate.llm): settings, prompt pack, resume cache, teacher."""
    from sessions.workspace import jobs_dir
    from trainers.data.generate import llm
    from trainers.data.generate.llm_settings import teacher_settings

    settings = teacher_settings(spec.id, spec.extra)
    pack_path = (
        resolve_source(DatasetSpec(id=spec.id, format=spec.format, source=settings.prompt_pack), base_dir)
        if settings.prompt_pack
        else None
    )
    pack = llm.load_pack(spec.format, pack_path)
    options = {
        "persona_in_system_prompt": spec.persona_in_system_prompt,
        "system_prompt": spec.extra.get("system_prompt", ""),
    }
    espec = engine_spec_for(session, spec)
    engine, teacher = _open_teacher(session, spec, engine_opener, settings=settings)
    log(f"teacher: {teacher.label}; prompt pack {pack.path}")
    try:
        mode = llm.structured_mode(settings, espec.kind, teacher.can_constrain)
        fp = llm.fingerprint(
            spec.format,
            persona,
            spec.seed,
            f"{espec.kind}:{espec.base_url or ''}:{espec.model}",
            pack,
            settings,
            options,
            mode,
        )
        current = work_dir / llm.CACHE_FILE if work_dir is not None else None
        search = llm.earlier_caches(jobs_dir(workspace), current) if settings.resume and workspace is not None else []
        cache = llm.ReplyCache(current, fp, search)
        if cache.reused:
            log(f"resuming: {cache.reused} teacher replies recorded by earlier builds ({', '.join(cache.reused_from)})")
        res = llm.generate(
            spec.format,
            persona,
            teacher,
            spec.size,
            spec.seed,
            options,
            pack=pack,
            engine_kind=espec.kind,
            cache=cache,
            progress=progress,
            cancelled=cancelled,
        )
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()
    return res.records, res.stats(settings, teacher.label)


def _generate(
    session: Session,
    spec: DatasetSpec,
    persona: Persona | None,
    base_dir: Any,
    progress: Progress,
    cancelled: Callable[[], bool],
    engine_opener: Any,
    log: Callable[[str], None],
    workspace: Path | None = None,
    work_dir: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records and generator-specific statistics for a non-mix spec."""
    if spec.generator == "general":
        from sessions.workspace import jobs_dir
        from trainers.data.generate import general

        res = general.generate(
            spec.size,
            base_model_for(session, spec),
            spec.seed,
            work_dir=work_dir,
            jobs_root=jobs_dir(workspace) if workspace is not None else None,
            engine_opener=engine_opener,
            progress=progress,
            cancelled=cancelled,
            log=log,
        )
        return res.records, res.stats
    if spec.format in PERSONA_FORMATS:
        return _persona_generate(
            session, spec, persona, base_dir, progress, cancelled, engine_opener, log, workspace, work_dir
        )
    return _import_generate(session, spec, base_dir, progress, engine_opener, log, cancelled)


def _persona_generate(
    session: Session,
    spec: DatasetSpec,
    persona: Persona | None,
    base_dir: Any,
    progress: Progress,
    cancelled: Callable[[], bool],
    engine_opener: Any,
    log: Callable[[str], None],
    workspace: Path | None,
    work_dir: Path | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    extra = spec.extra
    assert persona is not None
    fmt = format_module(spec.format)
    options = {
        "persona_in_system_prompt": spec.persona_in_system_prompt,
        "system_prompt": extra.get("system_prompt", ""),
    }
    if spec.generator == "template":
        from trainers.data.generate import template

        res = template.generate(
            fmt,
            persona,
            spec.size,
            spec.seed,
            options,
            progress=lambda d, t: progress(d, t, "templating"),
            cancelled=cancelled,
        )
        return res.records, {
            "attempts": res.attempts,
            "exact_duplicates_rejected": res.exact_duplicates,
            "near_duplicates_rejected": res.near_duplicates,
            "probe_leaks_rejected": res.probe_leaks,
        }
    return _llm_generate(session, spec, persona, base_dir, progress, cancelled, engine_opener, log, workspace, work_dir)


def _import_generate(
    session: Session,
    spec: DatasetSpec,
    base_dir: Any,
    progress: Progress,
    engine_opener: Any,
    log: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    extra = spec.extra
    source = resolve_source(spec, base_dir)
    strict = bool(extra.get("strict", False))
    if spec.format == "persona_chat":
        from trainers.data.formats import persona_chat

        return persona_chat.build_examples(
            source,
            spec.variant or "own",
            spec.context_lines,
            side=str(extra.get("side", "both")),
            seed=spec.seed,
            strict=strict,
            progress=lambda d, t: progress(d, t, "reading conversations"),
        )
    from trainers.data.formats import tailoring

    engine_holder: dict[str, Any] = {}

    def infer(prompt: str, preferred: str, other: str) -> str | None:
        if "teacher" not in engine_holder:
            # Inference wants the most likely description: greedy unless the spec says otherwise.
            engine_holder["engine"], engine_holder["teacher"] = _open_teacher(session, spec, engine_opener, 0.0)
            log(f"persona inference with {engine_holder['teacher'].label}")
        reply = engine_holder["teacher"](tailoring.inference_messages(prompt, preferred, other), 80)
        return tailoring.parse_persona(reply)

    try:
        records, stats = tailoring.build_examples(
            source,
            "sft" if spec.format == "tailoring_sft" else "dpo",
            persona_source=str(extra.get("persona_source", "auto")),
            both_sides=bool(extra.get("both_sides", False)),
            strict=strict,
            infer=infer,
            progress=lambda d, t: progress(d, t, "reading pairs"),
            cancelled=cancelled,
        )
    finally:
        if "engine" in engine_holder and hasattr(engine_holder["engine"], "close"):
            engine_holder["engine"].close()
    if "teacher" in engine_holder:
        t = engine_holder["teacher"].stats
        stats.update(
            teacher=engine_holder["teacher"].label,
            teacher_calls=t.calls,
            teacher_tokens_per_s=round(t.tokens_per_s, 2),
            teacher_errors=t.errors[:10],
        )
    return records, stats


def _mix(spec: DatasetSpec, workspace: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    train: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    shapes: dict[str, str] = {}
    for other in spec.mix:
        part_train = data_reader.load_records(workspace, other, "train")
        part_held = data_reader.load_records(workspace, other, "heldout")
        for r in part_train[:1] + part_held[:1]:
            shapes[other] = shape_of_record(r)
        for r, bucket in [(r, train) for r in part_train] + [(r, held) for r in part_held]:
            r = dict(r)
            r["meta"] = {**r.get("meta", {}), "mixed_from": other}
            bucket.append(r)
    kinds = set(shapes.values())
    if "prompt_completion_chat" in kinds and kinds <= {"messages", "prompt_completion_chat"}:
        # Conversational prompt-completion becomes plain messages so one trainer takes both.
        for bucket in (train, held):
            for r in bucket:
                if shape_of_record(r) == "prompt_completion_chat":
                    msgs = to_messages(r)
                    r.clear()
                    r.update({"messages": msgs, "meta": r.get("meta", {})})
        kinds = {"messages"}
    if len(kinds) > 1:
        listed = ", ".join(f"{k} ({v})" for k, v in shapes.items())
        raise DatasetError(
            f"Dataset {spec.id!r} mixes record shapes that one trainer cannot take together: {listed}; "
            "mix only datasets of one shape (text with text, conversations with conversations)."
        )
    return train, held, {"mixed": list(spec.mix), "shape": next(iter(kinds), "")}


# --- after generating -----------------------------------------------------------------------------


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in record.items() if k != "meta"}, sort_keys=True, ensure_ascii=False)


def drop_exact_duplicates(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    seen: set[str] = set()
    out = []
    for r in records:
        key = _canonical(r)
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out, len(records) - len(out)


def split_records(
    records: list[dict[str, Any]], held_out: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded train/held-out split by group: the turns of one conversation or the sides of one
    pair (same `meta.row`) stay on one side, so held-out examples never leak into training."""
    if held_out <= 0 or len(records) < 2:
        return list(records), []
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        key = r.get("meta", {}).get("row", f"#{i}") if isinstance(r.get("meta"), dict) else f"#{i}"
        groups.setdefault(key, []).append(i)
    keys = list(groups)
    rng = random.Random(f"{seed}:split")
    rng.shuffle(keys)
    want = max(1, round(len(records) * held_out))
    held_idx: set[int] = set()
    for k in keys:
        if len(held_idx) >= want:
            break
        if len(held_idx) + len(groups[k]) > want and held_idx and len(keys) > 1:
            continue
        held_idx.update(groups[k])
    if len(held_idx) >= len(records):  # one group: nothing left to train on
        return list(records), []
    train = [r for i, r in enumerate(records) if i not in held_idx]
    held = [r for i, r in enumerate(records) if i in held_idx]
    return train, held


def render_text(record: dict[str, Any], tokenizer: Any | None) -> str:
    """The example as the trainer will see it: conversational records through the chat template."""
    msgs = to_messages(record) if shape_of_record(record) in ("messages", "prompt_completion_chat") else None
    if msgs is not None:
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(msgs, tokenize=False)
        return "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
    shape = shape_of_record(record)
    if shape == "text":
        return str(record["text"])
    if shape == "prompt_completion":
        return str(record["prompt"]) + str(record["completion"])
    if shape == "preference":
        return str(record["prompt"]) + str(record["chosen"])
    return record_text(record)


def preview(record: dict[str, Any], base_model: str = DEFAULT_BASE_MODEL) -> str:
    """One example rendered through the base model's chat template (what training sees)."""
    from engines.models import load_tokenizer

    tok = load_tokenizer(base_model)
    text = render_text(record, tok)
    if shape_of_record(record) == "preference":
        text += "\n\n--- rejected ---\n" + str(record["prompt"]) + str(record["rejected"])
    return text


def token_stats(records: list[dict[str, Any]], base_model: str, seed: int) -> dict[str, Any]:
    """Token lengths of the rendered examples under the base model's tokenizer (a seeded sample past 500)."""
    try:
        from engines.models import load_tokenizer

        tok = load_tokenizer(base_model)
    except Exception as e:  # noqa: BLE001 - statistics must not fail a build
        return {
            "error": f"tokenizer of {base_model} unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        }
    sample = records
    if len(records) > TOKEN_SAMPLE:
        sample = random.Random(f"{seed}:tokens").sample(records, TOKEN_SAMPLE)
    lengths = sorted(len(tok(render_text(r, tok), add_special_tokens=False)["input_ids"]) for r in sample)
    if not lengths:
        return {"base_model": base_model, "count": 0}
    return {
        "base_model": base_model,
        "sampled": len(lengths),
        "min": lengths[0],
        "mean": round(statistics.fmean(lengths), 1),
        "median": lengths[len(lengths) // 2],
        "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))],
        "max": lengths[-1],
        "total_estimate": round(statistics.fmean(lengths) * len(records)),
    }


def quality_stats(records: list[dict[str, Any]], seed: int, persona: Persona | None = None) -> dict[str, Any]:
    texts = [record_text(r) for r in records]
    sample = texts
    if len(texts) > NEAR_DUP_SAMPLE:
        sample = random.Random(f"{seed}:neardup").sample(texts, NEAR_DUP_SAMPLE)
    nd = near_duplicate_report(sample)
    nd["sampled"] = len(sample)
    return {
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
        "distinct_2_target": round(distinct_n([target_text(r) for r in records], 2), 4),
        "near_duplicates": nd,
        **text_quality(records, persona_fields(persona) if persona is not None else (), seed),
    }


def trait_coverage(records: list[dict[str, Any]]) -> dict[str, int]:
    c: Counter = Counter()
    for r in records:
        meta: dict[str, Any] = r["meta"] if isinstance(r.get("meta"), dict) else {}
        for t in meta.get("traits", []) or []:
            c[t] += 1
    return dict(sorted(c.items()))


# --- the build ------------------------------------------------------------------------------------


def build_dataset(
    session: Session,
    spec: DatasetSpec,
    workspace: str | Path,
    *,
    base_dir: str | Path | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    engine_opener: Callable[[EngineSpec], Any] | None = None,
    with_tokens: bool = True,
    work_dir: str | Path | None = None,
) -> BuildResult:
    """Build `spec` into the workspace and return where the files are and their statistics.

    `base_dir` is where relative source paths start (the session file's folder); `work_dir` is
    the job's folder, where the llm generator records its teacher's replies as they arrive.
    """
    work_dir = Path(work_dir) if work_dir is not None else None
    workspace = Path(workspace)
    progress = progress or (lambda d, t, m: None)
    cancelled = cancelled or (lambda: False)
    log = log or (lambda m: None)
    t0 = time.perf_counter()
    persona = check_spec(session, spec, workspace)
    # Fail on a bad id before any work.
    train_path = data_reader.split_path(workspace, spec.id, "train")
    held_path = data_reader.split_path(workspace, spec.id, "heldout")

    if spec.mix:
        train, held, gen_stats = _mix(spec, workspace)
        train, ex1 = drop_exact_duplicates(train)
        held, ex2 = drop_exact_duplicates(held)
        exact_removed = ex1 + ex2
        if spec.size > 0 and len(train) > spec.size:
            train = random.Random(f"{spec.seed}:mix").sample(train, spec.size)
        generated = len(train) + len(held)
    else:
        records, gen_stats = _generate(
            session, spec, persona, base_dir, progress, cancelled, engine_opener, log, workspace, work_dir
        )
        if cancelled():
            raise DatasetError(f"Building {spec.id!r} was cancelled; nothing was written.")
        records, exact_removed = drop_exact_duplicates(records)
        generated = len(records)
        if spec.format in IMPORT_FORMATS and spec.size > 0 and len(records) > spec.size:
            keep = sorted(random.Random(f"{spec.seed}:size").sample(range(len(records)), spec.size))
            records = [records[i] for i in keep]
        train, held = split_records(records, spec.held_out, spec.seed)
    gen_seconds = time.perf_counter() - t0
    progress(1, 1, "statistics")
    everything = train + held
    fmt = spec.format if not spec.mix else "mix"
    stats: dict[str, Any] = {
        "dataset": spec.id,
        "format": fmt,
        "shape": SHAPES.get(spec.format, gen_stats.get("shape", "")) if not spec.mix else gen_stats.get("shape", ""),
        "generator": "mix" if spec.mix else (spec.generator if spec.format in PERSONA_FORMATS else "import"),
        "persona": spec.persona,
        "seed": spec.seed,
        "requested": spec.size,
        "count": len(everything),
        "train": len(train),
        "heldout": len(held),
        "generated": generated,
        "exact_duplicates_removed": exact_removed,
        "near_duplicates_removed": gen_stats.get("near_duplicates_rejected", 0),
        "malformed": gen_stats.get("malformed", 0),
        "skipped": gen_stats.get("broken_rows", 0),
        "seconds": round(gen_seconds, 3),
        "examples_per_s": round(len(everything) / gen_seconds, 1) if gen_seconds > 0 else None,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "generation": gen_stats,
    }
    if spec.format in PERSONA_FORMATS and not spec.mix and spec.generator != "general":
        stats["persona_in_system_prompt"] = spec.persona_in_system_prompt
        stats["trait_coverage"] = trait_coverage(everything)
        if len(everything) < spec.size:
            stats["shortfall"] = (
                f"made {len(everything)} of {spec.size} distinct examples; add traits, facts or "
                "example lines to the persona for more variety"
            )
            log(stats["shortfall"])
    stats.update(quality_stats(everything, spec.seed, persona))
    if with_tokens and spec.extra.get("token_stats", True):
        stats["tokens"] = token_stats(everything, base_model_for(session, spec), spec.seed)
    data_reader.write_jsonl(train_path, train)
    data_reader.write_jsonl(held_path, held)
    stats_file = data_reader.write_stats(workspace, spec.id, stats)
    progress(1, 1, "done")
    return BuildResult(spec, train_path, held_path, stats_file, stats)
