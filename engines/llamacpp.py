"""GGUF models through llama-cpp-python: chat with the GGUF's own template, streaming, LoRA GGUFs.

The chat template comes from the GGUF's metadata (`tokenizer.chat_template`), which is what
llama-cpp-python's `create_chat_completion` uses when no chat format is forced; a GGUF without
one is refused for chat rather than silently given llama-2's template. Log-probabilities need
the logits of every position, which costs memory on every call, so they come from a second
context opened the first time they are asked for.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engines.base import EngineError, Message, Sampling, check_messages
from engines.models import resolve_model

T = TypeVar("T")

if TYPE_CHECKING:
    from sessions.model import EngineSpec


GPU_LAYERS_ENV = "PERSONA_TUI_GPU_LAYERS"


def gpu_layers() -> int:
    """Layers llama.cpp offloads to the GPU: all of them (-1) where this llama-cpp-python was built
    with a GPU backend (scripts/setup builds CUDA where nvcc is found), none on a CPU build.
    PERSONA_TUI_GPU_LAYERS overrides (0 keeps a CUDA build on the CPU, e.g. while a run trains)."""
    import os

    raw = os.environ.get(GPU_LAYERS_ENV, "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise EngineError(
                f"{GPU_LAYERS_ENV}={raw!r} is not a whole number of layers (-1 = all, 0 = none)."
            ) from None
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def cpu_lanes(specs: Sequence[Any]) -> int:
    """How many llama.cpp contexts may decode at once, one per engine spec given: two when every
    spec is llama.cpp with its thread count left to llama.cpp (half the logical CPUs: one of two)
    on a CPU build with two or more cores, so each context has cores of its own and decodes as it
    would alone (a seed's reply repeats only at a fixed thread count, docs/training.md). One
    otherwise: on a GPU, or for transformers and remote engines, they would share one device."""
    import os

    if len(specs) < 2 or (os.cpu_count() or 1) < 2:
        return 1
    if any(s.kind != "llamacpp" or s.threads for s in specs):
        return 1
    return 2 if gpu_layers() == 0 else 1


def in_lanes(work: Callable[[T, threading.Event], None], items: Sequence[T], lanes: int) -> None:
    """`work(item, stop)` for every item, `lanes` at a time, each in a thread of its own (the
    contexts `cpu_lanes` allows). When one fails, `stop` is set so the others end at their next
    reply; the first failure, in item order, is raised once all have ended. One lane runs them
    in the caller's thread, in order."""
    import concurrent.futures

    stop = threading.Event()
    if lanes <= 1:
        for item in items:
            work(item, stop)
        return
    with concurrent.futures.ThreadPoolExecutor(lanes, thread_name_prefix="lane") as pool:
        futures = [pool.submit(work, item, stop) for item in items]
        for future in concurrent.futures.as_completed(futures):
            if future.exception() is not None:
                stop.set()
    for future in futures:
        future.result()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppEngine:
    """An EngineSpec of kind "llamacpp": `model` is a GGUF (or bundled name), `adapter` a LoRA GGUF.

    `spec.seed` is the context's default seed (each request may pass its own); spec.extra may hold
    `chat_format` (a llama-cpp-python chat format name, for a GGUF whose metadata lacks a template).
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        model = resolve_model(spec.model)
        if model.kind != "gguf":
            raise EngineError(
                f"engine {spec.id!r}: llama.cpp needs a GGUF file but {spec.model!r} is an HF folder; "
                "export it to GGUF or use the transformers engine."
            )
        self.model_path = model.path
        kwargs: dict[str, Any] = {
            "model_path": str(model.path),
            "n_ctx": int(spec.n_ctx),
            "verbose": False,
            "n_gpu_layers": gpu_layers(),
        }
        if spec.threads:
            kwargs["n_threads"] = kwargs["n_threads_batch"] = int(spec.threads)
        elif kwargs["n_gpu_layers"] == 0:
            # llama-cpp-python decodes on half the logical CPUs but evaluates prompts on all of them,
            # so two contexts at once (cpu_lanes) asked for twice the cores at every prompt: two
            # contexts, 24 seeded replies each, took 44.0 s against 25.7 with prompts on the
            # decoding threads too (2 cores). The thread count changes no number: the demo's traits
            # evaluation gave all 1,178 recorded outputs again (docs/evaluation.md).
            import os

            kwargs["n_threads_batch"] = max((os.cpu_count() or 2) // 2, 1)
        if spec.seed is not None:
            kwargs["seed"] = int(spec.seed)
        if spec.extra.get("chat_format"):
            kwargs["chat_format"] = str(spec.extra["chat_format"])
        if spec.adapter:
            adapter = Path(spec.adapter).expanduser()
            if not adapter.is_file() or adapter.suffix.lower() != ".gguf":
                raise EngineError(
                    f"engine {spec.id!r}: the LoRA adapter {adapter} is not a .gguf file; "
                    "export the run's adapter to GGUF first."
                )
            kwargs["lora_path"] = str(adapter)
        self._kwargs = kwargs
        self.llm = self._open(kwargs)
        self.has_chat_template = bool(spec.extra.get("chat_format") or self.llm.metadata.get("tokenizer.chat_template"))
        self._scorer: Any = None
        self._lock = threading.RLock()

    def _open(self, kwargs: dict[str, Any]) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise EngineError(
                f"llama.cpp could not load {kwargs['model_path']}"
                + (f" with the adapter {kwargs['lora_path']}" if "lora_path" in kwargs else "")
                + f" ({str(e).rstrip('.')}); is it a complete GGUF file? Export or copy it again."
            ) from e

    # -- helpers
    @staticmethod
    def _sampling_kwargs(s: Sampling) -> dict[str, Any]:
        # top_k and min_p off: temperature and top_p mean the same in every engine.
        return {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "seed": s.seed,
            "stop": list(s.stop),
        }

    def _chat_request(self, messages: Sequence[Message], sampling: dict[str, Any]) -> dict[str, Any]:
        if not self.has_chat_template:
            raise EngineError(
                f"{self.model_path} has no chat template in its GGUF metadata; re-export it with "
                'its tokenizer\'s template, or set extra.chat_format (e.g. "chatml") on the engine.'
            )
        msgs = check_messages(messages)
        return {"messages": msgs, **self._sampling_kwargs(Sampling.from_kwargs(sampling))}

    # -- the Engine interface
    def chat(self, messages: Sequence[Message], **sampling: Any) -> str:
        req = self._chat_request(messages, sampling)
        with self._lock:
            out = self.llm.create_chat_completion(**req)
        return out["choices"][0]["message"].get("content") or ""

    def chat_reply(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        response_format: str = "json_schema",
        schema_name: str = "reply",
        **sampling: Any,
    ) -> dict[str, Any]:
        """One chat completion, constrained by a grammar when a schema is given, with token counts.

        llama.cpp turns the JSON schema into a grammar (`response_format={"type": "json_object",
        "schema": …}`), so the reply always parses as JSON of that shape unless it is cut off at
        max_tokens (`finish_reason` "length"). `response_format` "json_object" drops the schema and
        keeps only "some JSON object"; the other names mean the schema (the same call for this engine).
        """
        req = self._chat_request(messages, sampling)
        if schema is not None:
            req["response_format"] = (
                {"type": "json_object"}
                if response_format == "json_object"
                else {"type": "json_object", "schema": schema}
            )
        with self._lock:
            out = self.llm.create_chat_completion(**req)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return {
            "text": choice["message"].get("content") or "",
            "finish_reason": choice.get("finish_reason"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }

    def stream_chat(self, messages: Sequence[Message], **sampling: Any) -> Iterator[str]:
        """Pieces of the reply as they are decoded; close the iterator to stop early."""
        return self._stream(self._chat_request(messages, sampling))  # bad input fails here, not later

    def _stream(self, req: dict[str, Any]) -> Iterator[str]:
        with self._lock:
            for chunk in self.llm.create_chat_completion(stream=True, **req):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

    def complete(self, prompt: str, **sampling: Any) -> str:
        kw = self._sampling_kwargs(Sampling.from_kwargs(sampling))
        with self._lock:
            out = self.llm.create_completion(prompt, **kw)
        return out["choices"][0]["text"]

    def tokenize(self, text: str) -> list[int]:
        """Token ids as llama.cpp reads `text` (special tokens like <|im_start|> parsed)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Log P of each continuation token given the prompt, from the model's own logits.

        Tokens are those of prompt+continuation after the longest prefix shared with the prompt
        alone, so a merge across the boundary is scored rather than mis-split.
        """
        if not continuation:
            return []
        import numpy as np

        with self._lock:
            if self._scorer is None:
                self._scorer = self._open({**self._kwargs, "logits_all": True})
            sc = self._scorer
            p = sc.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            full = sc.tokenize((prompt + continuation).encode("utf-8"), add_bos=True, special=True)
            n = _common_prefix(p, full)
            if n == 0:  # nothing to condition the first token on: start from BOS
                bos = sc.token_bos()
                full, n = [bos, *full], 1
            if n >= len(full):
                return []
            if len(full) > sc.n_ctx():
                raise EngineError(
                    f"prompt and continuation are {len(full)} tokens, more than the context of "
                    f"{sc.n_ctx()}; raise n_ctx on engine {self.spec.id!r} or shorten them."
                )
            # Reuse the evaluated prefix (probes share their prompt); rows before it are valid.
            keep = min(_common_prefix(sc.input_ids[: sc.n_tokens].tolist(), full), len(full) - 1)
            sc.n_tokens = keep
            sc.eval(full[keep:])
            rows = np.asarray(sc.scores[n - 1 : len(full) - 1], dtype=np.float64)
        targets = np.asarray(full[n:])
        m = rows.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(rows - m).sum(axis=1))
        out = (rows[np.arange(len(targets)), targets] - logz).tolist()
        if not all(math.isfinite(x) for x in out):
            raise EngineError(f"llama.cpp returned non-finite logits for {self.model_path}.")
        return out

    def close(self) -> None:
        with self._lock:
            for llm in (self._scorer, self.llm):
                if llm is not None:
                    llm.close()
            self._scorer = None
