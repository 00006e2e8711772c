"""The eval job (kind "eval"): run one evaluation of a session, keep every reply, score it.

    job_dir = create_eval_job(session_file, "odile-traits")   # spec frozen (evaluators.evaluate.spec)
    jobs.start_job(job_dir)                                  # python -m evaluators.worker <job_dir>
    ...
    scores = load_scores(job_dir); record_results(session_file, "odile-traits", job_dir)

The job writes, in its directory:
- `outputs.jsonl`: one line per reply or probe, written as it is produced: its `index` and
  `output` id ("<job-id>:<index>", what annotations point at), `kind` (reference | knowledge |
  expression | reply | pair | tailoring | perplexity | drift_turn), `model`, `prompt`, `reply`, the trait and
  probe ids where there are some, the `label` and the `scorer` that gave it, and per-output
  `metrics` (numbers that agreement.metric_agreement can rank against people's ratings);
- `scores.json`: the evaluation's result tables (see evaluators.tables), rewritten after each
  model, with `partial: true` and the reasons in `problems` when anything was left out
  (a model that failed to load, an engine without log-probabilities, a cancel).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.evaluate.spec import FALLBACK, ModelEntry, build_job_spec

if TYPE_CHECKING:
    from engines.base import Engine
    from evaluators.probes import ExpressionCell, KnowledgeCell
    from sessions.model import Persona
    from sessions.store import SessionFile
    from supervisor.jobs import JobReporter

SCORES_FILE = "scores.json"
OUTPUTS_FILE = "outputs.jsonl"
WORKER = "evaluators.worker"
JOB_KIND = "eval"


# ----------------------------------------------------------------------------- launching


def create_eval_job(session_file: SessionFile, eval_id: str, resolve: Any = None, job_id: str | None = None) -> Path:
    """Validate the evaluation, freeze its inputs and create a queued job (started by the caller)."""
    from supervisor import jobs

    spec = build_job_spec(session_file, eval_id, resolve)
    return jobs.create_job(session_file.workspace, JOB_KIND, spec, worker=WORKER, job_id=job_id)


def run_eval_inline(session_file: SessionFile, eval_id: str, resolve: Any = None) -> Path:
    """Create the job and run it in this process (the demo, experiments, tests); its directory.

    Raises ValueError with the job's one-sentence error if it fails; a cancelled job returns
    (its scores say partial).
    """
    from supervisor import jobs

    job_dir = create_eval_job(session_file, eval_id, resolve)
    status = jobs.run_job_inline(job_dir, {JOB_KIND: "evaluators.evaluate.job"})
    if status.state == "failed":
        raise ValueError(f"evaluation {eval_id!r} failed: {status.error}")
    return job_dir


def load_scores(job_dir: str | Path) -> dict[str, Any]:
    path = Path(job_dir) / SCORES_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{Path(job_dir)} has no {SCORES_FILE} yet; the evaluation has not scored anything.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None


def summary(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers per model worth keeping in the session file (no nulls: TOML has none)."""
    out: dict[str, Any] = {}
    kind = scores.get("kind")
    if kind == "reference":
        for row in scores.get("rows", []):
            vals = {
                "bleu": row.get("bleu"),
                "rouge_l": row.get("rouge_l"),
                "bertscore_f1": (row.get("bertscore") or {}).get("F1"),
                "perplexity": row.get("perplexity"),
                "hits_at_1": row.get("hits@1"),
                "f1": row.get("f1"),
            }
            out[row["model"]] = {k: round(v, 4) for k, v in vals.items() if isinstance(v, (int, float))}
    elif kind == "traits":
        for row in scores.get("rows", []):
            cell = {}
            for name in ("knowledge", "expression"):
                rate = row[name].get("rate")
                if rate is not None:
                    cell[name] = round(rate, 4)
            cell["flag"] = row["flag"]
            out.setdefault(row["model"], {})[row["trait"]] = cell
        for cmp in scores.get("comparison") or []:
            vs: dict[str, Any] = {"base": cmp["base"]}
            know = (cmp.get("knowledge") or {}).get("overall") or {}
            if know.get("n"):
                vs.update(knowledge_diff=round(know["diff"], 4), knowledge_p=round(know["p"], 6))
            if cmp.get("expression"):
                vs["traits_up"] = sum(r.get("verdict") == "up" for r in cmp["expression"]["traits"])
            if cmp.get("controls"):
                vs["controls_passed"] = sum(c.get("passed") is True for c in cmp["controls"])
                vs["controls"] = len(cmp["controls"])
            out.setdefault(cmp["model"], {})["vs_base"] = vs
    elif kind in ("judge", "tailoring"):
        for row in scores.get("pairs", []):
            rate = row["win"].get("rate")
            key = row["criterion"] + (f"_{row['group']}" if row.get("group") else "")
            if rate is not None:
                out.setdefault(row["model"], {})[key] = round(rate, 4)
    elif kind == "perplexity_matrix":
        for row in scores.get("rows", []):
            out[row["model"]] = {k: round(v, 4) for k, v in row["values"].items() if isinstance(v, (int, float))}
    elif kind == "drift":
        from evaluators.drift import summary as drift_summary

        out = drift_summary(scores)
    return out


def record_results(session_file: SessionFile, eval_id: str, job_dir: str | Path) -> dict[str, Any]:
    """Append the job's summary to the evaluation's `results` in the session and save it."""
    scores = load_scores(job_dir)
    spec = next((e for e in session_file.session.evals if e.id == eval_id), None)
    if spec is None:
        raise ValueError(f"{session_file.path}: there is no evaluation {eval_id!r} to record results for.")
    entry = {
        "job": Path(job_dir).name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "partial": bool(scores.get("partial")),
        "summary": summary(scores),
    }
    results = list(spec.extra.get("results") or [])
    results.append(entry)
    spec.extra["results"] = results
    session_file.save()
    return entry


# ----------------------------------------------------------------------------- data


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    from sessions.jsonl import read_jsonl as read

    return read(path)


def chat_example(record: Mapping[str, Any]) -> tuple[list[dict[str, str]], str] | None:
    """(context messages, reference reply) of a persona_chat or chat_demos record, else None."""
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list) and completion:
        last = completion[-1]
        if isinstance(last, Mapping) and isinstance(last.get("content"), str):
            return [dict(m) for m in prompt], last["content"]
    messages = record.get("messages")
    if isinstance(messages, list):
        idx = max(
            (i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "assistant"), default=-1
        )
        if idx > 0:
            return [dict(m) for m in messages[:idx]], str(messages[idx].get("content") or "")
    return None


def conversation_key(record: Mapping[str, Any], index: int) -> str:
    """Which conversation a record came from, so that hits@1 never draws a distractor from it."""
    meta: Mapping[str, Any] = record["meta"] if isinstance(record.get("meta"), Mapping) else {}
    for key in ("conversation", "conversation_id", "source_row", "row"):
        if meta.get(key) not in (None, ""):
            return f"{key}:{meta[key]}"
    prompt = record.get("prompt") or record.get("messages") or []
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], Mapping) and prompt[0].get("role") == "system":
        return "system:" + str(prompt[0].get("content"))
    return f"record:{index}"


def text_target(record: Mapping[str, Any]) -> tuple[list[dict[str, str]] | str, str] | None:
    """What to score in a record of any shape: (chat messages or raw prompt, continuation)."""
    example = chat_example(record)
    if example is not None:
        return example
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        for key in ("completion", "chosen"):
            if isinstance(record.get(key), str) and record[key].strip():
                return prompt, record[key]
    if isinstance(record.get("text"), str) and record["text"].strip():
        return "", record["text"]
    return None


# ----------------------------------------------------------------------------- the job's state


class Run:
    """What every evaluation kind shares: settings, outputs, scores, progress and problems."""

    def __init__(self, job: JobReporter) -> None:
        self.job = job
        spec = job.spec
        self.settings: dict[str, Any] = dict(spec.get("settings") or {})
        self.models = [ModelEntry.from_plain(m) for m in spec.get("models") or []]
        self.persona: Persona | None = None
        if spec.get("persona"):
            from sessions import codec
            from sessions.model import Persona

            problems: list = []
            self.persona = codec.decode(Persona, spec["persona"], ("persona",), problems)
            if problems:
                job.fail(f"the job's frozen persona is damaged ({problems[0][1]}); create the job again.")
        self.done = 0
        self.total = 0
        self._next = 0
        self._out = open(job.dir / OUTPUTS_FILE, "w", encoding="utf-8")
        self.scores: dict[str, Any] = {
            "eval": spec.get("eval"),
            "kind": spec.get("eval_kind"),
            "job": job.dir.name,
            "session": spec.get("session"),
            "models": [m.label for m in self.models],
            "settings": self.settings,
            "partial": False,
            "problems": [],
            "notes": [],
            "started": time.time(),
        }

    # -- recording
    def output(self, **row: Any) -> str:
        if self.persona is not None:
            row.setdefault("persona", self.persona.id)
        index = self._next
        self._next += 1
        oid = f"{self.job.dir.name}:{index}"
        self._out.write(json.dumps({"index": index, "output": oid, **row}, default=str) + "\n")
        self._out.flush()
        return oid

    def tick(self, n: int = 1, message: str = "") -> None:
        self.done += n
        self.job.progress(self.done, self.total, message)

    def problem(self, message: str) -> None:
        """Something was left out: the result is partial, and says why."""
        self.scores["partial"] = True
        self.scores["problems"].append(message)
        self.job.log(f"problem: {message}")
        self.job.event(event="problem", message=message)

    def note(self, message: str) -> None:
        self.scores["notes"].append(message)
        self.job.log(message)

    def write_scores(self) -> None:
        self.scores["updated"] = time.time()
        path = self.job.dir / SCORES_FILE
        from sessions.store import atomic_write

        atomic_write(path, json.dumps(self.scores, indent=1, default=str) + "\n", backup=False, fsync=False)

    def stop_if_cancelled(self) -> None:
        if self.job.cancelled:
            self.problem("cancelled before the end; the scores cover what was done.")
            self.write_scores()
            self.job.raise_if_cancelled()

    def close(self) -> None:
        self._out.close()

    # -- models
    def sampling(self) -> dict[str, Any]:
        s = self.settings
        return {"max_tokens": s["max_tokens"], "temperature": s["temperature"], "top_p": s["top_p"]}

    def open(self, entry: ModelEntry) -> Any | None:
        """The model's engine, or None (with the reason recorded) when it cannot be opened."""
        from engines import open_engine

        self.job.log(f"opening {entry.label} ({entry.engine.kind}: {entry.engine.model})")
        try:
            return open_engine(entry.engine)
        except (ValueError, OSError, RuntimeError) as e:
            self.problem(f"model {entry.label!r} could not be opened and is left out: {e}")
            return None

    def open_judge(self) -> Any:
        """The judge (or the fallback scorer) with its prompts, or None when none is set."""
        from evaluators.judge import Judge, load_prompt

        name = self.settings.get("judge", "")
        if not name:
            return None
        if name == FALLBACK:
            from evaluators.fallback import FallbackScorer

            return FallbackScorer()
        from engines import open_engine
        from sessions.model import EngineSpec

        overrides = dict(self.settings.get("prompts") or {})
        if self.settings.get("rubric"):
            overrides["expression"] = self.settings["rubric"]
        prompts = {k: load_prompt(k, v) for k, v in overrides.items()}
        spec = self.job.spec["judge"]
        engine = open_engine(EngineSpec(**spec["engine"]))
        return Judge(
            engine,
            spec["label"],
            prompts,
            max_tokens=int(self.settings.get("judge_max_tokens", 160)),
            seed=int(self.settings.get("seed", 0)),
        )

    def system_for(self, entry: ModelEntry) -> str | None:
        from sessions.model import persona_system_prompt

        if self.persona is not None and (entry.persona_prompt or self.settings.get("system") == "persona"):
            return persona_system_prompt(self.persona)
        return None


def _close(engine: Any) -> None:
    if engine is not None and hasattr(engine, "close"):
        engine.close()


def _logprob_error(e: Exception) -> bool:
    """An engine that cannot score text at all (an endpoint without logprobs, no chat template)."""
    from engines import EngineUnsupported
    from evaluators.probes import NoChatTemplate

    return isinstance(e, (EngineUnsupported, NoChatTemplate))


# ----------------------------------------------------------------------------- reference


def run_reference(run: Run) -> None:
    from engines import EngineError
    from evaluators.metrics import likelihood, reference
    from evaluators.probes import render_chat

    s = run.settings
    path = s["data_path"]
    records = read_jsonl(path)
    examples = []
    skipped = 0
    for i, record in enumerate(records):
        ex = chat_example(record)
        if ex is None or not ex[1].strip() or not ex[0]:
            skipped += 1
            continue
        examples.append((i, ex[0], ex[1], conversation_key(record, i)))
    if not examples:
        run.job.fail(
            f"no record of {path} has a prompt and a reference reply; reference metrics need "
            "persona_chat or chat_demos records."
        )
    if skipped:
        run.problem(f"{skipped} of {len(records)} records of {path} have no reference reply and were skipped.")
    pool = [(conv, ref) for _, _, ref, conv in examples]
    chosen = examples[: s["samples"]] if s["samples"] else examples
    if s["samples"] > len(examples):
        run.note(
            f"samples = {s['samples']} asks for more examples than {path} holds ({len(examples)} "
            f"with a reference reply); all {len(examples)} are scored."
        )
    run.scores.update(data=path, n_examples=len(chosen), rows=[])
    run.total = len(chosen) * len(run.models)
    for entry in run.models:
        engine = run.open(entry)
        row: dict[str, Any] = {"model": entry.label, "n": 0}
        if engine is None:
            row["error"] = "could not be opened"
            run.scores["rows"].append(row)
            run.tick(len(chosen))
            continue
        hyps: list[str] = []
        refs: list[str] = []
        token_lps: list[list[float]] = []
        ranks: list[likelihood.RankResult] = []
        bert: list[tuple[float, float, float]] = []
        empty = 0
        failed: list[str] = []
        want_lp = s["perplexity"] or s["hits"]
        try:
            for k, (index, messages, ref, conv) in enumerate(chosen):
                run.stop_if_cancelled()
                try:
                    reply = engine.chat(messages, **run.sampling(), seed=s["seed"] + k)
                except EngineError as e:  # e.g. a conversation longer than the context
                    failed.append(f"record {index + 1}: {e}")
                    run.tick()
                    continue
                if not reply.strip():
                    empty += 1
                metrics: dict[str, Any] = {
                    "bleu": reference.bleu_sentence(reply, ref).score,
                    "rouge_l": reference.rouge_l(reply, ref)[2],
                    "f1": reference.unigram_f1(reply, ref),
                }
                if s["bertscore"]:
                    b = reference.bertscore([reply], [ref])
                    bert.append((b.precision[0], b.recall[0], b.f1[0]))
                    metrics["bertscore_f1"] = b.f1[0]
                if want_lp:
                    try:
                        prompt = render_chat(engine, messages, entry.engine.model)
                        if s["perplexity"]:
                            lps = engine.logprobs(prompt, ref)
                            token_lps.append(lps)
                            metrics["logprob_mean"] = sum(lps) / max(len(lps), 1)
                            metrics["perplexity"] = likelihood.perplexity(lps)
                        if s["hits"]:
                            distractors = likelihood.draw_distractors(
                                pool, conv, ref, s["distractors"], seed=s["seed"] + index
                            )
                            rank = likelihood.rank_true_reply(engine, prompt, ref, distractors, s["rank_by"])
                            ranks.append(rank)
                            metrics["rank"] = rank.rank
                            metrics["candidates"] = rank.candidates
                    except Exception as e:  # noqa: BLE001 - an engine without logprobs leaves these out
                        if not _logprob_error(e):
                            raise
                        run.problem(
                            f"model {entry.label!r} offers no log-probabilities ({e}); its perplexity and hits@1 are left out."
                        )
                        want_lp = False
                hyps.append(reply)
                refs.append(ref)
                run.output(
                    kind="reference",
                    model=entry.label,
                    record=index,
                    prompt=messages,
                    reply=reply,
                    reference=ref,
                    scorer="reference metrics",
                    metrics=metrics,
                )
                run.tick(message=f"{entry.label}: {k + 1}/{len(chosen)}")
        finally:
            if failed:
                run.problem(
                    f"model {entry.label!r} could not answer {len(failed)} example(s), left out; the first: {failed[0]}"
                )
            row.update(_reference_row(hyps, refs, token_lps, ranks, bert, empty, s))
            row["model"] = entry.label
            run.scores["rows"].append(row)
            run.write_scores()
            _close(engine)
    if any(r.get("hits") for r in run.scores["rows"]):
        run.note(
            f"hits@1 ranks the true reply among up to {s['distractors']} distractors from other "
            f"conversations by {s['rank_by']} log-likelihood; ties count as misses."
        )


def _reference_row(hyps, refs, token_lps, ranks, bert, empty, s) -> dict[str, Any]:
    from evaluators.metrics import likelihood, reference

    row: dict[str, Any] = {"n": len(hyps), "empty_replies": empty}
    if not hyps:
        return row
    row["bleu"] = reference.bleu_corpus(hyps, refs).score
    row["rouge_l"] = sum(reference.rouge_l(h, r)[2] for h, r in zip(hyps, refs)) / len(hyps)
    row["f1"] = sum(reference.unigram_f1(h, r) for h, r in zip(hyps, refs)) / len(hyps)
    if bert:
        n = len(bert)
        row["bertscore"] = {
            "P": sum(b[0] for b in bert) / n,
            "R": sum(b[1] for b in bert) / n,
            "F1": sum(b[2] for b in bert) / n,
        }
        row["bertscore_model"] = f"all-MiniLM-L6-v2 layer {reference.BERTSCORE_LAYERS}"
    if token_lps:
        row["perplexity"] = likelihood.corpus_perplexity(token_lps)
        row["perplexity_tokens"] = sum(len(t) for t in token_lps)
    if ranks:
        row["hits"] = likelihood.describe_hits(ranks)
        row["hits@1"] = row["hits"]["hits@1"]
    return row


# ----------------------------------------------------------------------------- traits


def _same_scoring(run: Run) -> None:
    """Base and run through the same engine and quantisation: a run resolved to its exported
    merged GGUF (q8_0) is scored as the base GGUF plus the export's LoRA GGUF instead, when the
    base entry is that same GGUF in llama.cpp; otherwise the difference is stated in the notes."""
    from sessions.model import EngineSpec

    if len(run.models) < 2:
        return
    base = run.models[0].engine
    for entry in run.models[1:]:
        eng = entry.engine
        if (eng.kind, eng.model) == (base.kind, base.model):
            continue  # the same engine and weights; an adapter on top is what is measured
        lora = Path(eng.model).parent / "adapter-f16.gguf"
        if eng.kind == base.kind == "llamacpp" and not base.adapter and lora.is_file():
            from trainers.export.reader import report_beside

            trained_on = str(report_beside(eng.model).get("base_model") or "")  # the export's base model
            if trained_on and trained_on == base.model:
                entry.engine = EngineSpec(**{**dataclasses.asdict(eng), "model": base.model, "adapter": str(lora)})
                run.note(
                    f"{entry.label} is scored as {base.model} + its LoRA GGUF ({lora.name}), the base's "
                    f"engine and quantisation, not its merged export {Path(eng.model).name}."
                )
                continue
        if eng.kind != base.kind or Path(eng.model).name != Path(base.model).name:
            run.note(
                f"{entry.label} ({eng.kind}: {Path(eng.model).name}) and the base {run.models[0].label} "
                f"({base.kind}: {Path(base.model).name}) are not scored through the same engine and "
                "quantisation; part of any difference may be that."
            )


def run_traits(run: Run) -> None:
    from evaluators import controls
    from evaluators.probes import MarkerLabeller, expression_cells, knowledge_cells, trait_rows

    s = run.settings
    persona = run.persona
    assert persona is not None, "create_eval_job freezes the persona of a traits evaluation"
    _same_scoring(run)
    with_controls = bool(s.get("controls")) and len(run.models) >= 2
    other = controls.unrelated_persona() if with_controls else None
    n_know = sum(len(t.knowledge_probes) for t in persona.traits) if s["knowledge"] else 0
    n_expr = sum(len(t.expression_probes) for t in persona.traits) * s["samples"] if s["expression"] else 0
    n_ctrl = (
        (sum(len(t.knowledge_probes) for t in other.traits) + len(controls.NEUTRAL_PROMPTS) * s["neutral_samples"] + 1)
        if other
        else 0
    )
    run.total = (n_know + n_expr + n_ctrl) * len(run.models)
    no_probes = [t.id for t in persona.traits if not t.knowledge_probes and not t.expression_probes]
    if no_probes:
        run.problem(f"trait(s) {', '.join(no_probes)} of persona {persona.id!r} have no probes and are not measured.")
    if s.get("controls") and len(run.models) < 2:
        run.note("controls need a base to compare with; name the base model first and the run after it.")
    labeller: Any = None
    if s["expression"]:
        if s["labeller"] == "judge":
            labeller = run.open_judge()
        elif s["labeller"] == "fallback":
            from evaluators.fallback import FallbackScorer

            labeller = FallbackScorer()
        else:
            labeller = MarkerLabeller()
    traits = [t.id for t in persona.traits]
    run.scores.update(
        persona=persona.id,
        traits=traits,
        labeller=getattr(labeller, "name", ""),
        headline_scorer=s["labeller"] if s["expression"] else "",
        knowledge_by=s["knowledge_by"],
        base=run.models[0].label if run.models else "",
        engines={
            m.label: {"kind": m.engine.kind, "model": m.engine.model, "adapter": m.engine.adapter} for m in run.models
        },
        rows=[],
    )
    all_k: list = []
    all_e: list = []
    ctrl_k: list = []
    ctrl_n: list = []
    ppl: dict[str, float] = {}
    try:
        for entry in run.models:
            engine = run.open(entry)
            if engine is None:
                run.tick(n_know + n_expr + n_ctrl)
                continue
            system = run.system_for(entry)
            k_cells: list = []
            e_cells: list = []
            try:
                if s["knowledge"]:

                    def on_k(cell: KnowledgeCell) -> None:
                        run.output(
                            **cell.to_dict(),
                            prompt=cell.question,
                            prompt_system=bool(system),
                            metrics={"logp_margin": cell.logp_affirm - cell.logp_deny},
                        )
                        run.tick(message=f"{entry.label}: knowledge {cell.trait}")

                    try:
                        k_cells = knowledge_cells(
                            engine, persona, entry.label, system, s["knowledge_by"], entry.engine.model, on_cell=on_k
                        )
                    except Exception as e:  # noqa: BLE001
                        if not _logprob_error(e):
                            raise
                        run.problem(
                            f"model {entry.label!r} offers no log-probabilities ({e}); its knowledge probes are left out."
                        )
                        run.tick(n_know - len(k_cells))
                run.stop_if_cancelled()
                if s["expression"]:

                    def on_e(cell: ExpressionCell) -> None:
                        run.output(
                            **cell.to_dict(),
                            prompt_system=bool(system),
                            metrics={"expressed": 1.0 if cell.label == "expressed" else 0.0},
                        )
                        run.tick(message=f"{entry.label}: expression {cell.trait}")

                    e_cells = expression_cells(
                        engine,
                        persona,
                        entry.label,
                        labeller,
                        s["samples"],
                        system,
                        run.sampling(),
                        seed=s["seed"],
                        on_cell=on_e,
                        should_stop=lambda: run.job.cancelled,
                    )
                run.stop_if_cancelled()
                if other is not None:
                    _control_cells(run, engine, entry, other, persona, system, ctrl_k, ctrl_n, ppl)
            finally:
                rows = trait_rows(traits, k_cells, e_cells, entry.label)
                run.scores["rows"].extend(r.to_dict() for r in rows)
                all_k += k_cells
                all_e += e_cells
                if hasattr(labeller, "stats"):
                    run.scores["judge_stats"] = dict(labeller.stats)
                run.write_scores()
                _close(engine)
            run.stop_if_cancelled()
    finally:
        _close(getattr(labeller, "engine", None))
        _compare_traits(run, traits, all_k, all_e, ctrl_k, ctrl_n, ppl)
        run.write_scores()


def _control_cells(
    run: Run,
    engine: Engine,
    entry: ModelEntry,
    other: Persona,
    persona: Persona,
    system: str | None,
    ctrl_k: list,
    ctrl_n: list,
    ppl: dict[str, float],
) -> None:
    """The three controls' measurements for one model (see evaluators.controls)."""
    from evaluators import controls
    from evaluators.probes import knowledge_cells

    s = run.settings

    def on_k(cell: KnowledgeCell) -> None:
        run.output(**{**cell.to_dict(), "kind": "control_knowledge"}, prompt=cell.question)
        run.tick(message=f"{entry.label}: control, unrelated persona")

    try:
        ctrl_k += knowledge_cells(
            engine, other, entry.label, system, s["knowledge_by"], entry.engine.model, on_cell=on_k
        )
    except Exception as e:  # noqa: BLE001
        if not _logprob_error(e):
            raise
    run.stop_if_cancelled()

    def on_n(cell: dict[str, Any]) -> None:
        run.output(**cell)
        run.tick(message=f"{entry.label}: control, neutral prompts")

    ctrl_n += controls.over_expression_cells(
        engine,
        persona,
        entry.label,
        run.sampling(),
        samples=s["neutral_samples"],
        seed=s["seed"],
        system=system,
        on_cell=on_n,
    )
    try:
        ppl[entry.label], tokens = controls.text_perplexity(engine)
        run.output(
            kind="control_perplexity",
            model=entry.label,
            prompt="",
            reply="",
            scorer="logprob",
            metrics={"perplexity": ppl[entry.label], "tokens": tokens},
        )
    except Exception as e:  # noqa: BLE001
        if not _logprob_error(e):
            raise
    run.tick(message=f"{entry.label}: control, general text")


def _compare_traits(
    run: Run, traits: list[str], all_k: list, all_e: list, ctrl_k: list, ctrl_n: list, ppl: dict[str, float]
) -> None:
    """Every model after the first against the first (the base): knowledge (McNemar), expression
    (Fisher + Holm) and, when run, the three controls."""
    from evaluators import controls
    from evaluators.probes import expression_comparison, knowledge_comparison

    s = run.settings
    if len(run.models) < 2:
        return
    base = run.models[0].label
    out = []
    for entry in run.models[1:]:
        cmp: dict[str, Any] = {"model": entry.label, "base": base}
        if all_k:
            cmp["knowledge"] = knowledge_comparison(all_k, entry.label, base, traits)
        if all_e:
            cmp["expression"] = expression_comparison(all_e, entry.label, base, traits)
        if s.get("controls"):
            cmp["controls"] = [
                controls.unrelated(ctrl_k, entry.label, base, s["unrelated_margin"]),
                controls.over_expression(ctrl_n, entry.label, base, s["over_margin"]),
                controls.ability(ppl, entry.label, base, s["ability_bound"]),
            ]
        out.append(cmp)
    run.scores["comparison"] = out


# ----------------------------------------------------------------------------- judge and tailoring


def _judge_pairs(
    run: Run,
    items: list[dict[str, Any]],
    replies: dict[str, list[str | None]],
    criteria: list[str],
    persona_of: Callable[[dict[str, Any]], str],
    groups: tuple[str, ...] = (),
) -> None:
    """Every model after the first against the first, per criterion (and group), both orders."""
    from evaluators.judge import judge_pair, win_rates

    judge = run.open_judge()
    base = run.models[0].label
    run.scores.update(judge=judge.name, baseline=base, pairs=[])
    try:
        for entry in run.models[1:]:
            if entry.label not in replies or base not in replies:
                continue
            for criterion in criteria:
                results: list[tuple[dict[str, Any], Any]] = []
                for k, item in enumerate(items):
                    run.stop_if_cancelled()
                    mine, theirs = replies[entry.label][k], replies[base][k]
                    if mine is None or theirs is None:
                        continue
                    pr = judge_pair(judge, criterion, item["prompt"], mine, theirs, persona_of(item))
                    results.append((item, pr))
                    run.output(
                        kind="pair",
                        model=entry.label,
                        baseline=base,
                        criterion=criterion,
                        prompt=item["prompt"],
                        reply=mine,
                        reply_baseline=theirs,
                        group=item.get("group", ""),
                        label=pr.outcome,
                        scorer=pr.scorer,
                        consistent=pr.consistent,
                        first=pr.first.to_dict(),
                        second=pr.second.to_dict(),
                        metrics={"win": {"win": 1.0, "tie": 0.5, "loss": 0.0}.get(pr.outcome)},
                    )
                    run.tick(message=f"judging {entry.label} vs {base}: {criterion}")
                for group in ("", *groups):
                    chosen = [pr for item, pr in results if not group or item.get("group") == group]
                    rates = win_rates(chosen)
                    run.scores["pairs"].append(
                        {
                            "model": entry.label,
                            "baseline": base,
                            "criterion": criterion,
                            **({"group": group} if group else {}),
                            **rates.to_dict(),
                        }
                    )
                    if rates.unparseable:
                        run.problem(
                            f"the judge answered off-format twice for {rates.unparseable} of "
                            f"{len(chosen)} {criterion} pairs of {entry.label!r}"
                            + (f" ({group} persona)" if group else "")
                            + "; they are counted as unparseable, not scored."
                        )
                run.write_scores()
        if hasattr(judge, "stats"):
            run.scores["judge_stats"] = dict(judge.stats)
    finally:
        run.write_scores()
        _close(getattr(judge, "engine", None))


def _generate_all(
    run: Run, items: list[dict[str, Any]], ask: Callable[[Any, ModelEntry, dict[str, Any], int], str]
) -> dict[str, list[str | None]]:
    replies: dict[str, list[str | None]] = {}
    for entry in run.models:
        engine = run.open(entry)
        if engine is None:
            run.tick(len(items))
            continue
        out: list[str | None] = []
        try:
            for k, item in enumerate(items):
                run.stop_if_cancelled()
                reply = ask(engine, entry, item, k)
                out.append(reply)
                run.output(
                    kind=item.get("kind", "reply"),
                    model=entry.label,
                    prompt=item["prompt"],
                    reply=reply,
                    sample=item.get("sample", 0),
                    group=item.get("group", ""),
                    model_input=item.get("input_for", {}).get(entry.label, ""),
                )
                run.tick(message=f"{entry.label}: reply {k + 1}/{len(items)}")
        finally:
            replies[entry.label] = out + [None] * (len(items) - len(out))
            _close(engine)
    return replies


def run_judge(run: Run) -> None:
    from evaluators.probes import chat_messages
    from sessions.model import persona_system_prompt

    s = run.settings
    persona = run.persona
    assert persona is not None, "create_eval_job freezes the persona of a judge evaluation"
    questions = list(s["questions"]) or list(dict.fromkeys(q for t in persona.traits for q in t.expression_probes))
    if s["limit"]:
        questions = questions[: s["limit"]]
    items = [
        {"prompt": q, "sample": j, "seed": s["seed"] + 1000 * i + j}
        for i, q in enumerate(questions)
        for j in range(s["samples"])
    ]
    run.total = len(items) * len(run.models) + len(items) * (len(run.models) - 1) * len(s["criteria"])
    run.scores.update(persona=persona.id, questions=len(questions))

    def ask(engine: Engine, entry: ModelEntry, item: dict[str, Any], k: int) -> str:
        return engine.chat(chat_messages(item["prompt"], run.system_for(entry)), **run.sampling(), seed=item["seed"])

    replies = _generate_all(run, items, ask)
    card = persona_system_prompt(persona)
    _judge_pairs(run, items, replies, list(s["criteria"]), lambda item: card)


def tailoring_input(prompt: str, persona: str | None) -> str:
    """The paper's template: `Prompt: [prompt]\\nPersona: [persona]\\nResponse:` (no persona line without one)."""
    return f"Prompt: {prompt}\nPersona: {persona}\nResponse:" if persona else f"Prompt: {prompt}\nResponse:"


def fewshot_prefix(path: str | Path, with_persona: bool) -> str:
    """Worked examples in the tailoring template, each ending in its chosen response (the paper's
    few-shot prompt-only baseline); the persona is the gold one where the row has it."""
    out = []
    for row in read_jsonl(path):
        prompt, chosen = str(row.get("prompt") or "").strip(), str(row.get("chosen") or "").strip()
        persona = str(row.get("chosen_persona_gold") or row.get("chosen_persona_retr") or "").strip()
        if prompt and chosen:
            out.append(f"{tailoring_input(prompt, persona if with_persona else None)} {chosen}\n\n")
    return "".join(out)


def run_tailoring(run: Run) -> None:
    s = run.settings
    path = s["data_path"]
    rows = read_jsonl(path)
    if s["samples"] > len(rows):
        run.note(f"samples = {s['samples']} asks for more rows than {path} holds ({len(rows)}); all are used.")
    if s["samples"]:
        rows = rows[: s["samples"]]
    items: list[dict[str, Any]] = []
    missing = 0
    for i, row in enumerate(rows):
        prompt = str(row.get("prompt") or "").strip()
        for group in ("chosen", "rejected"):
            persona = str(row.get(f"{group}_persona_{s['persona_field']}") or "").strip()
            if not prompt or not persona:
                missing += 1
                continue
            items.append({"prompt": prompt, "persona": persona, "group": group, "row": i, "kind": "tailoring"})
    if not items:
        run.job.fail(
            f"no row of {path} has a prompt and a {s['persona_field']} persona "
            f"(chosen_persona_{s['persona_field']} / rejected_persona_{s['persona_field']}); "
            'try persona_field = "retr" or "gold".'
        )
    if missing:
        run.problem(f"{missing} prompt/persona pairs of {path} lack a prompt or a persona and were skipped.")
    no_persona = set(s["no_persona"])
    fewshot = set(s.get("fewshot_models") or [])
    shots = {flag: fewshot_prefix(s["fewshot_path"], flag) for flag in (True, False)} if fewshot else {}
    for item in items:
        item["input_for"] = {
            m.label: (shots[m.label not in no_persona] if m.label in fewshot else "")
            + tailoring_input(item["prompt"], None if m.label in no_persona else item["persona"])
            for m in run.models
        }
    run.total = len(items) * len(run.models) + len(items) * (len(run.models) - 1) * len(s["criteria"])
    run.scores.update(
        data=path,
        persona_field=s["persona_field"],
        items=len(items),
        groups={g: sum(i["group"] == g for i in items) for g in ("chosen", "rejected")},
    )

    def ask(engine: Engine, entry: ModelEntry, item: dict[str, Any], k: int) -> str:
        text = engine.complete(
            item["input_for"][entry.label], **run.sampling(), seed=s["seed"] + k, stop=["\nPrompt:", "\nPersona:"]
        )
        return text.strip()

    replies = _generate_all(run, items, ask)
    _judge_pairs(run, items, replies, list(s["criteria"]), lambda item: item["persona"], groups=("chosen", "rejected"))


# ----------------------------------------------------------------------------- perplexity matrix


def run_perplexity_matrix(run: Run) -> None:
    from engines import EngineError
    from evaluators.metrics import likelihood
    from evaluators.probes import render_chat

    s = run.settings
    datasets = []
    for ref, path in zip(s["data"], s["data_path"]):
        records = read_jsonl(path)
        targets = [t for t in (text_target(r) for r in records) if t is not None and t[1].strip()]
        if len(targets) < len(records):
            run.problem(f"{len(records) - len(targets)} records of {path} have nothing to score and were skipped.")
        if s["samples"] > len(targets):
            run.note(
                f"samples = {s['samples']} asks for more records than {path} holds ({len(targets)}); all are scored."
            )
        if s["samples"]:
            targets = targets[: s["samples"]]
        datasets.append((ref, path, targets))
    run.total = sum(len(t) for _, _, t in datasets) * len(run.models)
    run.scores.update(data=[d[0] for d in datasets], data_paths=[d[1] for d in datasets], rows=[])
    for entry in run.models:
        engine = run.open(entry)
        row: dict[str, Any] = {"model": entry.label, "values": {}, "tokens": {}}
        run.scores["rows"].append(row)
        if engine is None:
            run.tick(sum(len(t) for _, _, t in datasets))
            continue
        too_long: list[str] = []
        try:
            for ref, _path, targets in datasets:
                lps_all = []
                for k, (prompt, cont) in enumerate(targets):
                    run.stop_if_cancelled()
                    text = render_chat(engine, prompt, entry.engine.model) if isinstance(prompt, list) else prompt
                    try:
                        lps = engine.logprobs(text, cont)
                    except EngineError as e:
                        if _logprob_error(e):
                            raise
                        too_long.append(f"{ref} record {k + 1}: {e}")
                        run.tick()
                        continue
                    if lps:
                        lps_all.append(lps)
                        run.output(
                            kind="perplexity",
                            model=entry.label,
                            data=ref,
                            record=k,
                            prompt=prompt,
                            reply=cont,
                            scorer="logprob",
                            metrics={"perplexity": likelihood.perplexity(lps), "tokens": len(lps)},
                        )
                    run.tick(message=f"{entry.label} on {ref}")
                if lps_all:
                    row["values"][ref] = likelihood.corpus_perplexity(lps_all)
                    row["tokens"][ref] = sum(len(x) for x in lps_all)
                run.write_scores()
        except Exception as e:  # noqa: BLE001
            if not _logprob_error(e):
                raise
            run.problem(f"model {entry.label!r} offers no log-probabilities ({e}); its row is empty.")
        finally:
            if too_long:
                run.problem(
                    f"model {entry.label!r} could not score {len(too_long)} record(s), left out; the first: {too_long[0]}"
                )
            run.write_scores()
            _close(engine)


def run_drift(run: Run) -> None:
    from evaluators.drift import run_drift as work

    work(run)


RUNNERS: dict[str, Callable[[Run], None]] = {
    "reference": run_reference,
    "traits": run_traits,
    "judge": run_judge,
    "tailoring": run_tailoring,
    "perplexity_matrix": run_perplexity_matrix,
    "drift": run_drift,
}


def run(job: JobReporter) -> None:
    """The work of an eval job: `supervisor.jobs.run_worker` calls this with the JobReporter."""
    kind = job.spec.get("eval_kind")
    if kind not in RUNNERS:
        job.fail(
            f"the job's eval_kind {kind!r} is not one of: {', '.join(RUNNERS)}; create the job with create_eval_job."
        )
    state = Run(job)
    from engines.models import resolve_model
    from sessions.manifest import write_manifest

    write_manifest(
        job,
        resolve=resolve_model,
        seed=state.settings.get("seed"),
        models={
            k: v
            for e in state.models
            for k, v in ((e.label, e.engine.model), (f"{e.label} adapter", e.engine.adapter))
            if v
        }
        | {"judge": ((job.spec.get("judge") or {}).get("engine") or {}).get("model")},
        datasets=[state.settings.get("data_path"), state.settings.get("fewshot_path")],
    )
    job.log(f"evaluation {job.spec.get('eval')!r} ({kind}) on {', '.join(state.scores['models'])}")
    try:
        RUNNERS[kind](state)
        unopened = [p for p in state.scores["problems"] if "could not be opened" in p]
        if state.models and len(unopened) == len(state.models):
            job.fail(unopened[0])
    finally:
        state.scores["ended"] = time.time()
        state.scores["seconds"] = round(state.scores["ended"] - state.scores["started"], 2)
        state.write_scores()
        state.close()
    job.event(event="scores", kind=kind, partial=state.scores["partial"], summary=_finite(summary(state.scores)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
