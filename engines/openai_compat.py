"""Any OpenAI-compatible HTTP endpoint through the `openai` client (llama-cpp-python's server,
vLLM, Ollama, OpenAI itself). The API key is read from the environment variable the session
names and never appears in a message this module produces.

Log-probabilities of a continuation come from the completions endpoint with `echo=True,
logprobs=1, max_tokens=1`. llama-cpp-python's server (0.3.x) returns those shifted by one
token unless the prompt starts with the model's BOS token; each answer is therefore checked
(greedy: the generated token must be the top-1 of its own entry) and a shifted or missing
answer raises EngineUnsupported instead of returning wrong numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from engines.base import EngineError, EngineUnsupported, Message, Sampling, check_messages

if TYPE_CHECKING:
    from sessions.model import EngineSpec

NO_KEY = "sk-no-key"
# Structured-output request shapes (see OpenAIEngine.chat_reply).
RESPONSE_FORMATS = ("json_schema", "llama_schema", "json_object")
_ALIGNMENT_PROBE = "1, 2, 3, 4, 5, 6,"


class EndpointError(EngineError):
    """An endpoint's refusal or failure, with what a caller needs to decide on a retry.

    `status` is the HTTP status (None when no answer came), `retry_after` the seconds the server
    asked to wait (Retry-After), `retryable` whether asking again may succeed (429, 5xx, a dropped
    or timed-out connection; not a refused key, an unknown model or a rejected request).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        rejected: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.rejected = rejected


def _refused(cause: BaseException | None) -> bool:
    """Whether a connection error means nothing answered at all (the HTTP client's ConnectError,
    whichever httpx the openai client ships, or a refused socket)."""
    seen = 0
    while cause is not None and seen < 6:
        if type(cause).__name__ == "ConnectError" or isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _retry_after(e: Any) -> float | None:
    """Seconds from a response's Retry-After (or retry-after-ms) header; None when absent or a date."""
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        if headers.get("retry-after"):
            return max(float(headers["retry-after"]), 0.0)
    except ValueError:
        return None
    return None


class OpenAIEngine:
    """An EngineSpec of kind "openai": `base_url`, `model` (a served model id; empty or a
    `bundled:` name means the server's first model), `api_key_env` (the variable's name).
    spec.extra may hold `timeout` (seconds, default 120) and `max_retries` (default 1)."""

    def __init__(self, spec: EngineSpec) -> None:
        import openai

        if not spec.base_url:
            raise EngineError(
                f"engine {spec.id!r} has no base_url; set it to the server's URL, e.g. http://127.0.0.1:8000/v1."
            )
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        self._secret = key
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or NO_KEY,
            timeout=float(spec.extra.get("timeout", 120)),
            max_retries=int(spec.extra.get("max_retries", 1)),
        )
        self._model = "" if not spec.model or spec.model.startswith("bundled:") else spec.model
        self._aligned: bool | None = None
        self._prompt_tokens: dict[str, list[str]] = {}

    # -- errors
    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def _error(self, e: Exception, doing: str) -> EndpointError:
        import openai

        if isinstance(e, openai.APITimeoutError):
            return EndpointError(
                f"the endpoint at {self.base_url} did not answer in time while {doing}; check the server.",
                retryable=True,
            )
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            why = f" ({self._scrub(str(cause))})" if cause and str(cause) else ""
            if _refused(cause):  # nothing listens there: asking again will not help
                return EndpointError(
                    f"cannot reach the OpenAI-compatible endpoint at {self.base_url}{why}; check the URL and "
                    "that the server is running."
                )
            # The connection opened, then dropped or returned garbage: worth another try.
            return EndpointError(
                f"the endpoint at {self.base_url} dropped the connection while {doing}{why}; check the server.",
                retryable=True,
            )
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            var = self.spec.api_key_env
            return EndpointError(
                f"the endpoint at {self.base_url} refused the API key ({e.status_code}); "
                + (
                    f"check the key in the environment variable {var}."
                    if var
                    else "set api_key_env on the engine to the variable that holds the key."
                ),
                status=e.status_code,
            )
        if isinstance(e, openai.NotFoundError) and doing == "chatting" and "model" in _api_message(e).lower():
            return EndpointError(
                f"the endpoint at {self.base_url} has no model {self._model!r} (404); set the engine's model to "
                f"one it serves{self._served_hint()}.",
                status=404,
            )
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            said = _api_message(e)
            # llama-cpp-python's server answers a request it cannot validate with 500 and pydantic's
            # "validation error": a refused request, not a failing server.
            refused = status in (400, 415, 422) or (status == 500 and "validation error" in said.lower())
            first = (said.strip().splitlines() or [""])[0].rstrip(":. ")
            return EndpointError(
                f"the endpoint at {self.base_url} answered {status} while {doing}: {self._scrub(first)}.",
                status=status,
                retry_after=_retry_after(e),
                retryable=not refused and (status == 429 or status >= 500),
                rejected=refused,
            )
        if isinstance(e, openai.APIResponseValidationError | ValueError):
            return EndpointError(
                f"the endpoint at {self.base_url} sent an answer that is not valid while {doing}; "
                "check that it speaks the OpenAI API.",
                retryable=True,
            )
        return EndpointError(f"the endpoint at {self.base_url} failed while {doing}: {self._scrub(str(e))}.")

    def _served_hint(self) -> str:
        try:
            served = self.list_models()
        except EngineError:
            return ""
        return f" ({', '.join(served[:5])})" if served else ""

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import openai

        try:
            return fn(*args, **kwargs)
        except (openai.OpenAIError, ValueError) as e:  # ValueError: a body that is not JSON
            raise self._error(e, doing) from None  # no chained exception: it could echo the key

    # -- model
    def list_models(self) -> list[str]:
        page = self._call("listing models", self.client.models.list)
        return [m.id for m in page.data]

    @property
    def model(self) -> str:
        if not self._model:
            models = self.list_models()
            if not models:
                raise EngineError(f"the endpoint at {self.base_url} serves no models; set the engine's model.")
            self._model = models[0]
        return self._model

    @staticmethod
    def _sampling_kwargs(s: Sampling) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.seed is not None:
            kw["seed"] = s.seed
        if s.stop:
            kw["stop"] = list(s.stop)
        return kw

    # -- the Engine interface
    def chat(self, messages: Sequence[Message], **sampling: Any) -> str:
        kw = self._sampling_kwargs(Sampling.from_kwargs(sampling))
        msgs = check_messages(messages)
        resp = self._call("chatting", self.client.chat.completions.create, model=self.model, messages=msgs, **kw)
        return resp.choices[0].message.content or ""

    def chat_reply(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        response_format: str = "json_schema",
        schema_name: str = "reply",
        **sampling: Any,
    ) -> dict[str, Any]:
        """One chat completion, optionally constrained to a JSON schema, with its token usage.

        `response_format` picks how the schema is sent: "json_schema" (OpenAI's structured outputs,
        `strict`; vLLM and recent servers), "llama_schema" (`{"type": "json_object", "schema": …}`,
        what llama-cpp-python's server reads) or "json_object" (any JSON, no schema). No retries
        here: the caller decides, from the EndpointError's `retryable` and `retry_after`.
        Returns {"text", "finish_reason", "prompt_tokens", "completion_tokens"} (tokens None when
        the server does not report usage).
        """
        kw = self._sampling_kwargs(Sampling.from_kwargs(sampling))
        msgs = check_messages(messages)
        if schema is not None and response_format not in RESPONSE_FORMATS:
            raise EngineError(
                f"response_format {response_format!r} is unknown; use one of {', '.join(RESPONSE_FORMATS)}."
            )
        if schema is not None and response_format == "json_schema":
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            }
        elif schema is not None and response_format == "llama_schema":
            kw["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            kw["response_format"] = {"type": "json_object"}
        client = self.client.with_options(max_retries=0)
        resp = self._call("chatting", client.chat.completions.create, model=self.model, messages=msgs, **kw)
        if not getattr(resp, "choices", None):
            raise EndpointError(
                f"the endpoint at {self.base_url} answered without a choice; check that it speaks the OpenAI API.",
                retryable=True,
            )
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        return {
            "text": (choice.message.content if choice.message else "") or "",
            "finish_reason": choice.finish_reason,
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        }

    def stream_chat(self, messages: Sequence[Message], **sampling: Any) -> Iterator[str]:
        """Pieces of the reply as the server sends them; an unreachable server fails here."""
        kw = self._sampling_kwargs(Sampling.from_kwargs(sampling))
        msgs = check_messages(messages)
        stream = self._call(
            "chatting", self.client.chat.completions.create, model=self.model, messages=msgs, stream=True, **kw
        )
        return self._pieces(stream)

    def _pieces(self, stream: Any) -> Iterator[str]:
        import openai

        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as e:
            raise self._error(e, "streaming") from None
        finally:
            stream.close()

    def complete(self, prompt: str, **sampling: Any) -> str:
        kw = self._sampling_kwargs(Sampling.from_kwargs(sampling))
        resp = self._call("completing", self.client.completions.create, model=self.model, prompt=prompt, **kw)
        return resp.choices[0].text or ""

    def _echo(self, prompt: str) -> tuple[list[str], list[float | None], bool | None]:
        """Echoed tokens and their log-probs (the generated token dropped), and whether the answer
        proves itself aligned (True), shifted (False) or cannot tell (None)."""
        import openai

        try:
            resp = self.client.completions.create(
                model=self.model, prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0
            )
        except openai.NotFoundError:
            raise EngineUnsupported(
                f"the endpoint at {self.base_url} has no completions API, so it cannot give "
                "log-probabilities; score with a llama.cpp or transformers engine instead."
            ) from None
        except openai.APIStatusError as e:
            msg = _api_message(e)
            # 400/422: the request is refused; 500 "logprobs is not supported ...": llama-cpp-python
            # serving a model loaded without logits_all.
            if e.status_code in (400, 422, 501) or "logprob" in msg.lower():
                raise EngineUnsupported(
                    f"the endpoint at {self.base_url} does not give log-probabilities of prompt tokens "
                    f"(completions with echo and logprobs): {self._scrub(msg)}; score with a "
                    "llama.cpp or transformers engine instead."
                ) from None
            raise self._error(e, "scoring") from None
        except openai.OpenAIError as e:
            raise self._error(e, "scoring") from None
        choice = resp.choices[0]
        lp = choice.logprobs
        if lp is None or not lp.tokens or lp.token_logprobs is None:
            raise EngineUnsupported(
                f"the endpoint at {self.base_url} answered without log-probabilities for the prompt; "
                "score with a llama.cpp or transformers engine instead."
            )
        tokens, logps = list(lp.tokens), list(lp.token_logprobs)
        tops = list(lp.top_logprobs or [None] * len(tokens))
        text = choice.text or ""
        generated = text[len(prompt) :] if text.startswith(prompt) else None
        verdict: bool | None = None
        if choice.finish_reason == "length":
            # Greedy: the generated token is the top-1 of its own entry. When the last entry's
            # top-1 is another token, that entry is a prompt token and everything is shifted.
            top = tops[-1] or {}
            best = max(top.items(), key=lambda kv: kv[1])[0] if top else None
            if best is not None and best != tokens[-1]:
                verdict = False
            else:
                verdict = True if best is not None and tokens[-1] == generated else None
                tokens, logps = tokens[:-1], logps[:-1]
        return tokens, logps, verdict

    def _check_aligned(self, verdict: bool | None) -> None:
        if verdict is None:
            if self._aligned is None:
                self._aligned = self._echo(_ALIGNMENT_PROBE)[2] is not False
            verdict = self._aligned
        if verdict is False:
            raise EngineUnsupported(
                f"the endpoint at {self.base_url} returns echoed log-probabilities shifted by one token "
                "(llama-cpp-python's server does this when the prompt does not start with the model's "
                "BOS token), so they cannot be trusted; score with the llama.cpp engine on the GGUF instead."
            )

    def logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Log P of each continuation token: the echoed entries of prompt+continuation after
        the longest prefix they share with the echoed prompt alone."""
        if not continuation:
            return []
        if not prompt:
            raise EngineUnsupported(
                f"the endpoint at {self.base_url} cannot score text without a prompt (the first echoed "
                "token has no log-probability); give a prompt."
            )
        if prompt not in self._prompt_tokens:
            p_tokens, _, p_ok = self._echo(prompt)
            self._check_aligned(p_ok)
            if len(self._prompt_tokens) >= 64:  # probes reuse a prompt for several continuations
                self._prompt_tokens.pop(next(iter(self._prompt_tokens)))
            self._prompt_tokens[prompt] = p_tokens
        p_tokens = self._prompt_tokens[prompt]
        f_tokens, f_logps, f_ok = self._echo(prompt + continuation)
        self._check_aligned(f_ok)
        n = 0
        for a, b in zip(p_tokens, f_tokens):
            if a != b:
                break
            n += 1
        out = f_logps[n:]
        if any(x is None for x in out):
            raise EngineUnsupported(
                f"the endpoint at {self.base_url} left out log-probabilities of some continuation tokens."
            )
        return [float(x) for x in out]  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()


def _api_message(e: Any) -> str:
    """The server's own words from an API error body (shapes differ between servers)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        for msg in (err.get("message") if isinstance(err, dict) else err, body.get("message"), body.get("detail")):
            if msg:
                return str(msg).strip().rstrip(".")
    return str(getattr(e, "message", "") or e).strip().rstrip(".")
