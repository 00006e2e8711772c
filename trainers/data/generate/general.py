"""General replies: the base model's own answers to ordinary chat prompts, mixed into persona data.

Trained on persona data alone, a small model learns to recite its persona whatever it is asked
("What is two plus two?" — "I sketch a map of everything…") and loses general ability. Mixing in
replies the base model itself wrote to ordinary prompts (a shipped list, `banks/general_prompts.toml`,
about no persona) keeps it answering as before where no trait fits: measured in docs/training.md
("The recipe").

A dataset asks for them with `generator = "general"` (format chat_demos, no persona); its `size`
is the number of replies, so beside persona datasets in a run it sets the mix's ratio. Replies
are sampled with the base model of the run that trains on the dataset (`base_model_for`) through
the ordinary engine code, reply *i* with seed `seed + i`, each prompt once before any repeats, so a
build is deterministic; each reply is written to `<job dir>/general_replies.jsonl` as it arrives
and reused by a later build with the same fingerprint (model, prompts, seed, sampling), so a
rebuild or a killed build does not sample again.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

CACHE_FILE = "general_replies.jsonl"
# Sampling as the lead's measurement used it (T 0.7); 96 tokens holds most of the 135M model's
# answers, and a reply cut there is trimmed back to its last full sentence.
TEMPERATURE = 0.7
TOP_P = 0.95
MAX_TOKENS = 96
MIN_CHARS = 12


def load_prompts() -> list[str]:
    with resources.files("trainers").joinpath("banks", "general_prompts.toml").open("rb") as f:
        return [str(p) for p in tomllib.load(f)["prompts"]]


def engine_spec_for_model(model: str) -> Any:
    """How to sample from a base model: llama.cpp for GGUF files and bundled names, else transformers."""
    from sessions.model import EngineSpec

    kind = "llamacpp" if model.startswith("bundled:") or model.lower().endswith(".gguf") else "transformers"
    return EngineSpec(id="general-replies", kind=kind, model=model)


def fingerprint(model: str, prompts: list[str], seed: int, max_tokens: int) -> str:
    key = json.dumps(
        {
            "model": model,
            "prompts": prompts,
            "seed": seed,
            "temperature": TEMPERATURE,
            "top_p": TOP_P,
            "max_tokens": max_tokens,
        },
        sort_keys=True,
    )
    return "general:" + hashlib.sha256(key.encode()).hexdigest()[:20]


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def tidy(text: str, finish_reason: str | None) -> str:
    """The reply as a training target: stripped, and cut back to its last full sentence when the
    token limit cut it (so the model is not taught to stop mid-sentence); "" when nothing is left."""
    text = text.strip()
    if finish_reason == "length":
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        text = text[: ends[-1]] if ends else ""
    return text if len(text) >= MIN_CHARS else ""


@dataclass
class GeneralResult:
    records: list[dict[str, Any]]
    stats: dict[str, Any]


def generate(
    count: int,
    model: str,
    seed: int,
    *,
    work_dir: Path | None = None,
    jobs_root: Path | None = None,
    engine_opener: Callable[[Any], Any] | None = None,
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> GeneralResult:
    """`count` chat records {"messages": [user, assistant]} of the base model answering shipped
    prompts (each prompt used before any repeats, in a seeded order); replies that come out empty
    are skipped and counted."""
    from trainers.data.generate.llm import Reply, ReplyCache

    def no_progress(done: int, total: int, message: str = "") -> None:
        pass

    progress = progress or no_progress
    cancelled = cancelled or (lambda: False)
    log = log or (lambda m: None)
    prompts = load_prompts()
    order = list(range(len(prompts)))
    random.Random(f"{seed}:general").shuffle(order)
    fp = fingerprint(model, prompts, seed, max_tokens)
    current = work_dir / CACHE_FILE if work_dir is not None else None
    search = (
        sorted((p for p in jobs_root.glob(f"*/{CACHE_FILE}") if p != current), key=lambda p: p.stat().st_mtime)
        if jobs_root is not None and jobs_root.is_dir()
        else []
    )
    cache = ReplyCache(current, fp, search)
    if cache.reused:
        log(f"general replies: reusing {cache.reused} recorded by earlier builds ({', '.join(cache.reused_from)})")
    if engine_opener is None:
        from engines import open_engine

        engine_opener = open_engine
    opener = engine_opener
    spec = engine_spec_for_model(model)
    got_by_index: dict[int, dict[str, Any]] = {i: cache.replies[i] for i in range(count) if i in cache.replies}
    todo = [i for i in range(count) if i not in got_by_index]
    t0 = time.perf_counter()
    # Two llama.cpp contexts at once on a multi-core CPU build (engines.llamacpp.cpu_lanes), each
    # sampling every other reply: reply i keeps seed + i, and was measured to come out the same as
    # from one context (12 of 12), 1.85x as fast.
    from engines.llamacpp import cpu_lanes, in_lanes

    lanes = cpu_lanes([spec, spec]) if len(todo) > 1 else 1
    lock = threading.Lock()
    state = {"done": count - len(todo), "sampled": 0}
    engines: list[Any] = []
    if todo:
        log(
            f"general replies: sampling {model} (T {TEMPERATURE}, top_p {TOP_P}, <= {max_tokens} tokens)"
            + (f", {lanes} contexts at once" if lanes > 1 else "")
        )
    if state["done"]:
        progress(state["done"], count, "general replies")

    def sample(indices: list[int], stop: threading.Event) -> None:
        engine = None
        for i in indices:
            if cancelled() or stop.is_set():
                return
            if engine is None:
                engine = opener(spec)
                with lock:
                    engines.append(engine)
            t = time.perf_counter()
            messages = [{"role": "user", "content": prompts[order[i % len(prompts)]]}]
            sampling = {"max_tokens": max_tokens, "temperature": TEMPERATURE, "top_p": TOP_P, "seed": seed + i}
            if hasattr(engine, "chat_reply"):  # llama.cpp and endpoints say whether the limit cut it
                out = engine.chat_reply(messages, **sampling)
            else:
                out = {"text": engine.chat(messages, **sampling), "finish_reason": None}
            reply = Reply(
                out["text"],
                out.get("finish_reason"),
                out.get("prompt_tokens") or 0,
                out.get("completion_tokens") or 0,
                time.perf_counter() - t,
            )
            with lock:
                got_by_index[i] = cache.add(i, reply)
                state["sampled"] += 1
                state["done"] += 1
                progress(state["done"], count, "general replies")

    try:
        in_lanes(sample, [todo[k::lanes] for k in range(lanes)], lanes)
    finally:
        cache.close()
        for engine in engines:
            if hasattr(engine, "close"):
                engine.close()
    records: list[dict[str, Any]] = []
    empty = done = 0
    for i in range(count):
        got = got_by_index.get(i)
        if got is None:  # cancelled before it was sampled
            break
        reply = tidy(got["text"], got.get("finish_reason"))
        if not reply:
            empty += 1
        else:
            prompt = prompts[order[i % len(prompts)]]
            records.append(
                {
                    "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
                    "meta": {"general": True, "row": f"general-{i}", "prompt": order[i % len(prompts)]},
                }
            )
        done += 1
    sampled = state["sampled"]
    seconds = time.perf_counter() - t0
    return GeneralResult(
        records,
        {
            "general_requested": count,
            "general_kept": len(records),
            "general_empty": empty,
            "general_sampled": sampled,
            "general_reused": done - sampled,
            "general_seconds": round(seconds, 2),
            "general_model": model,
            "general_prompts": len(prompts),
        },
    )
