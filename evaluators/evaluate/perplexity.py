"""Perplexity matrix (kind "perplexity_matrix"): every model's perplexity on every dataset named."""

from __future__ import annotations

from typing import Any

from evaluators.evaluate.state import Run, cannot_score, close_engine, text_target
from sessions.jsonl import read_jsonl


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
                        if cannot_score(e):
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
            if not cannot_score(e):
                raise
            run.problem(f"model {entry.label!r} offers no log-probabilities ({e}); its row is empty.")
        finally:
            if too_long:
                run.problem(
                    f"model {entry.label!r} could not score {len(too_long)} record(s), left out; the first: {too_long[0]}"
                )
            run.write_scores()
            close_engine(engine)
