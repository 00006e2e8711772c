"""HF models through transformers: the bundled GGUF (dequantised, cached) or an HF folder, plus an
optional PEFT adapter — the engine that sees a training run's adapter without an export.

(The module is not called `transformers.py`, which would shadow the library.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.base import EngineError, Message, Sampling, StopStream, check_messages, cut_at_stop
from engines.models import chat_stop_tokens, load_hf_model, load_tokenizer, resolve_model

if TYPE_CHECKING:
    from sessions.model import EngineSpec


class TransformersEngine:
    """An EngineSpec of kind "transformers": `model` (bundled name, GGUF or HF folder), `adapter`
    (a PEFT adapter folder). spec.extra may hold `dtype` (float32 default, or bfloat16)."""

    def __init__(self, spec: EngineSpec) -> None:
        import torch

        self.spec = spec
        self.resolved = resolve_model(spec.model)
        dtype = str(spec.extra.get("dtype", "float32"))
        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        model = load_hf_model(spec.model, dtype=dtype)  # first: its folder holds the tokenizer too
        self.tokenizer = load_tokenizer(spec.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if spec.adapter:
            adapter = Path(spec.adapter).expanduser()
            if not (adapter / "adapter_config.json").is_file():
                raise EngineError(
                    f"engine {spec.id!r}: {adapter} is not a PEFT adapter folder (no adapter_config.json); "
                    "name a run's adapter/ folder."
                )
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(adapter))
            except Exception as e:
                raise EngineError(f"engine {spec.id!r}: cannot apply the adapter {adapter}: {e}") from e
            model.eval()
        self.model = model
        # Generation ends at the tokens the model's own chat template ends a turn with, not only eos.
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in chat_stop_tokens(self.tokenizer)]
        self.stop_ids = [i for i in dict.fromkeys(ids) if isinstance(i, int) and i != self.tokenizer.unk_token_id]
        self.n_ctx = int(spec.n_ctx)
        self._lock = threading.Lock()

    # -- helpers
    def _chat_ids(self, messages: Sequence[Message]) -> Any:
        msgs = check_messages(messages)
        if not self.tokenizer.chat_template:
            raise EngineError(
                f"the tokenizer of {self.spec.model!r} has no chat template; use complete() or a chat model."
            )
        enc = self.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return enc["input_ids"]

    def _generate_kwargs(self, input_ids: Any, s: Sampling) -> dict[str, Any]:
        import torch

        if s.seed is not None:
            torch.manual_seed(s.seed)
        kw: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": s.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.stop_ids or self.tokenizer.eos_token_id,
        }
        if s.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
        if s.stop:
            kw.update(stop_strings=list(s.stop), tokenizer=self.tokenizer)
        return kw

    def _generate(self, input_ids: Any, s: Sampling) -> str:
        import torch

        with self._lock, torch.inference_mode():
            out = self.model.generate(**self._generate_kwargs(input_ids, s))
        text = self.tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True)
        return cut_at_stop(text, s.stop)[0]

    def _stream(self, input_ids: Any, s: Sampling) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        halt = threading.Event()

        class Halt(StoppingCriteria):  # lets a reader that stops early end generation too
            def __call__(self, ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((ids.shape[0],), halt.is_set(), dtype=torch.bool)

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._generate_kwargs(input_ids, s)
        kw.update(streamer=streamer, stopping_criteria=StoppingCriteriaList([Halt()]))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**kw)
            except BaseException as e:  # noqa: BLE001 - handed to the reader below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=run, name="hf-generate", daemon=True)
        thread.start()
        stops = StopStream(s.stop)
        try:
            for piece in streamer:
                out = stops.feed(piece)
                if out:
                    yield out
                if stops.stopped:
                    break
            tail = stops.flush()
            if tail:
                yield tail
        finally:
            halt.set()
            thread.join()
        if errors:
            raise EngineError(f"transformers generation failed: {errors[0]}") from errors[0]

    # -- the Engine interface
    def chat(self, messages: Sequence[Message], **sampling: Any) -> str:
        s = Sampling.from_kwargs(sampling)
        return self._generate(self._chat_ids(messages), s)

    def stream_chat(self, messages: Sequence[Message], **sampling: Any) -> Iterator[str]:
        s = Sampling.from_kwargs(sampling)
        return self._stream(self._chat_ids(messages), s)

    def complete(self, prompt: str, **sampling: Any) -> str:
        s = Sampling.from_kwargs(sampling)
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:
            ids = ids.new_tensor([[self.tokenizer.bos_token_id or self.tokenizer.eos_token_id]])
        return self._generate(ids, s)

    def logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Log P of each continuation token given the prompt, by one forward pass.

        Tokens are those of prompt+continuation after the longest prefix shared with the
        prompt alone (as in the llama.cpp engine).
        """
        if not continuation:
            return []
        import torch

        p = self.tokenizer(prompt)["input_ids"]
        full = self.tokenizer(prompt + continuation)["input_ids"]
        n = 0
        for x, y in zip(p, full):
            if x != y:
                break
            n += 1
        if n == 0:
            full, n = [self.tokenizer.bos_token_id or self.tokenizer.eos_token_id, *full], 1
        if n >= len(full):
            return []
        if len(full) > self.n_ctx:
            raise EngineError(
                f"prompt and continuation are {len(full)} tokens, more than n_ctx {self.n_ctx} of "
                f"engine {self.spec.id!r}; raise n_ctx or shorten them."
            )
        ids = torch.tensor([full])
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, n - 1 : len(full) - 1].double()
        logp = torch.log_softmax(logits, dim=-1)
        out = logp[torch.arange(len(full) - n), ids[0, n:]].tolist()
        if not all(torch.isfinite(torch.tensor(out))):
            raise EngineError(f"the model {self.spec.model!r} gave non-finite log-probabilities.")
        return out

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()
