"""A small local HTTP server speaking the OpenAI chat-completions wire format, for tests and benches.

It stands in for a remote teacher or judge endpoint (hosted APIs cannot be reached, and
llama-cpp-python's own server answers one request at a time). It is real HTTP on 127.0.0.1, so
the `openai` client, its errors and its headers behave exactly as against a real server:

    with FakeOpenAI(reply=lambda body: '{"text": "..."}', latency=0.2) as server:
        spec = EngineSpec(id="t", kind="openai", base_url=server.url, model="teacher-1")

- `reply(body) -> str` makes the assistant's content from the request's JSON body; the default
  fills the request's JSON schema (`response_format`) with a sentence made from the prompt;
- `latency`: seconds each request takes (a number, or a function of the body, e.g. varying
  per prompt so that replies arrive out of order);
- `faults`: a list consumed one request at a time, each None (answer normally) or one of
  `("429", retry_after_s)`, `("500", retry_after_s_or_None)`, `("drop",)` (close the connection
  without answering), `("malformed",)` (a 200 whose body is not JSON);
- `api_key`: when set, any other bearer token gets 401;
- `reject_schema`: True answers 400 to a request with a `json_schema` response_format (as
  llama-cpp-python's server, which reads only its own shape), "all" to any response_format (a
  server that cannot constrain output at all);
- unknown model names get 404 with OpenAI's "model_not_found" body.

`requests` records every chat body received, `arrivals` when each came; `max_in_flight` the highest number served at once.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


def last_user_text(body: dict[str, Any]) -> str:
    msgs = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return str(msgs[-1].get("content", "")) if msgs else ""


WORDS = (
    "harbour lantern kettle orchard ledger meadow copper thistle window garden river pocket evening bicycle "
    "market letter violin quarry bakery tide chimney ferry pigeon lighthouse marmalade compass hedgerow "
    "teapot sparrow granite umbrella pantry willow saddle barley cobble glacier harvest lagoon mitten "
    "nutmeg oyster pebble quill raven scarf timber velvet walnut yarn zither anchor bramble cider "
    "dune ember fjord gravel hazel iris juniper kelp"
).split()


def _fill(schema: dict[str, Any], seed_text: str, rng: random.Random, key: str = "") -> Any:
    """A value that satisfies the (small) JSON schemas the project sends."""
    if "enum" in schema:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    kind = schema.get("type")
    if kind == "object":
        return {k: _fill(v, seed_text, rng, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [_fill(schema.get("items", {"type": "string"}), seed_text, rng, key) for _ in range(n)]
    if kind in ("integer", "number"):
        return rng.randint(1, 9)
    if kind == "boolean":
        return True
    picked = " ".join(rng.sample(WORDS, 10))
    return f"{key.capitalize() or 'Text'}: {picked}."


def default_reply(body: dict[str, Any]) -> str:
    """JSON filling the request's schema (or free text), the same for the same prompt."""
    text = last_user_text(body)
    rng = random.Random(text)
    rf = body.get("response_format") or {}
    schema = (rf.get("json_schema") or {}).get("schema") or rf.get("schema")
    if schema:
        return json.dumps(_fill(schema, text, rng))
    return f"A reply about {text[:80]}"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing its pool is not news
            super().handle_error(request, client_address)


class FakeOpenAI:
    def __init__(
        self,
        reply: Reply | None = None,
        latency: float | Callable[[dict[str, Any]], float] = 0.0,
        models: tuple[str, ...] = ("teacher-1",),
        api_key: str | None = None,
        faults: list[Any] | None = None,
        reject_schema: bool | str = False,
    ) -> None:
        self.reply = reply or default_reply
        self.latency = latency
        self.models = models
        self.api_key = api_key
        self.faults = list(faults or [])
        self.reject_schema = reject_schema
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each chat request
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response and no Nagle: otherwise delayed ACKs add ~40 ms to every request.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if not fake._authorised(self):
                    return
                if self.path.rstrip("/").endswith("/models"):
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]
                    fake._send(self, 200, {"object": "list", "data": data})
                else:
                    fake._send(self, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not fake._authorised(self):
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    fake._send(self, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                body = json.loads(raw or b"{}")
                fake._chat(self, body)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- serving
    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.api_key is None or handler.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._send(
            handler,
            401,
            {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
        return False

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        obj: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            fault = self.faults.pop(0) if self.faults else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.latency(body) if callable(self.latency) else self.latency
            if delay:
                time.sleep(delay)
            if body.get("model") not in self.models:
                self._send(
                    handler,
                    404,
                    {
                        "error": {
                            "message": f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                            "type": "invalid_request_error",
                            "code": "model_not_found",
                        }
                    },
                )
                return
            rf = body.get("response_format") or {}
            if (self.reject_schema == "all" and rf) or (self.reject_schema and rf.get("type") == "json_schema"):
                self._send(
                    handler,
                    400,
                    {
                        "error": {
                            "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                            "type": "invalid_request_error",
                            "param": "response_format",
                        }
                    },
                )
                return
            if fault is not None:
                kind = fault[0]
                if kind == "drop":
                    handler.close_connection = True
                    handler.connection.shutdown(2)  # no answer at all
                    return
                if kind == "malformed":
                    self._send(handler, 200, None, raw=b'{"id": "x", "choices": [')
                    return
                if kind in ("429", "500", "503"):
                    after = fault[1] if len(fault) > 1 else None
                    headers = {"Retry-After": str(after)} if after is not None else {}
                    self._send(
                        handler,
                        int(kind),
                        {
                            "error": {
                                "message": "Rate limit reached, slow down."
                                if kind == "429"
                                else "The server had an error.",
                                "type": "server_error",
                            }
                        },
                        headers,
                    )
                    return
            content = self.reply(body)
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            completion_tokens = len(content.split())
            self._send(
                handler,
                200,
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )
        finally:
            with self._lock:
                self.in_flight -= 1
