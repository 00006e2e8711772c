"""Reference evaluation (kind "reference"): replies to held-out prompts against the references —
BLEU, ROUGE-L, BERTScore, unigram F1, perplexity and hits@1.
"""

from __future__ import annotations

import threading
from typing import Any

from evaluators.evaluate.spec import ModelEntry
from evaluators.evaluate.state import Run, cannot_score, chat_example, close_engine, conversation_key, model_lanes
from sessions.jsonl import read_jsonl


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

    def score(entry: ModelEntry, stopping: threading.Event) -> None:
        engine = run.open(entry)
        row: dict[str, Any] = {"model": entry.label, "n": 0}
        if engine is None:
            row["error"] = "could not be opened"
            with run.lock:
                run.scores["rows"].append(row)
            run.tick(len(chosen))
            return
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
                if stopping.is_set():  # the other lane failed
                    return
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
                        if not cannot_score(e):
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
            with run.lock:
                run.scores["rows"].append(row)
                run.write_scores()
            close_engine(engine)

    run.each_model(score, model_lanes(run.models))
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
