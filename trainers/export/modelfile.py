"""An Ollama Modelfile beside each GGUF: FROM, a TEMPLATE equal to the run's chat template,
its stop tokens, and optionally the persona as SYSTEM.

Ollama templates are Go text/template, chat templates are Jinja; a general translator would be a
second template engine. Chat templates are, almost always, a per-message frame around the
content, plus a head, an optional default system message and a generation prompt. So the frame
is *measured*: the Jinja template is rendered with sentinel messages and the text around each
sentinel becomes the Go template's literal text. The result is checked by replaying it against
the Jinja template on several conversations; a template that is not such a frame (one that
rewrites contents, say) is refused with a sentence rather than exported wrong. The tests render
the Go template with Go's own text/template.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainers.export import ExportError

_SENT = {
    "system": "PTSENTINELSYSTEM7",
    "user": "PTSENTINELUSER1",
    "user2": "PTSENTINELUSER2",
    "assistant": "PTSENTINELASSISTANT1",
}


@dataclass(frozen=True)
class ChatFrame:
    """The literal text a chat template puts around each message."""

    head_no_system: str  # before the first message when it is not a system message (head + default system)
    system_pre: str  # before a system message's content (at the start: the head too)
    system_post: str
    user_pre: str
    user_post: str
    assistant_pre: str
    assistant_post: str
    generation: str  # the generation prompt (add_generation_prompt=True)

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """What the Go template renders for `messages` (Python mirror, used for the self-check)."""
        out = []
        for i, m in enumerate(messages):
            if i == 0 and m["role"] != "system":
                out.append(self.head_no_system)
            pre, post = {
                "system": (self.system_pre, self.system_post),
                "user": (self.user_pre, self.user_post),
                "assistant": (self.assistant_pre, self.assistant_post),
            }[m["role"]]
            out.append(pre + m["content"] + post)
        if not messages or messages[-1]["role"] != "assistant":
            out.append(self.generation)
        return "".join(out)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except Exception as e:  # noqa: BLE001 - Jinja raises its own exception types
        raise ExportError(
            f"the chat template cannot render a plain conversation ({e}); check the tokenizer's template."
        ) from None


def _split(text: str, sentinels: Sequence[str]) -> list[str]:
    """The text before, between and after the sentinels, which must appear once each, in order."""
    parts, rest = [], text
    for s in sentinels:
        if rest.count(s) != 1:
            raise ExportError(
                "the chat template does not put each message's content into the prompt exactly once, so it cannot be written as an Ollama TEMPLATE."
            )
        before, rest = rest.split(s)
        parts.append(before)
    parts.append(rest)
    return parts


def _strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ExportError(
            "the chat template frames messages differently depending on their position, so it cannot be written as an Ollama TEMPLATE."
        )
    return text[len(prefix) :]


def _strip_suffix(text: str, suffix: str) -> str:
    if suffix and not text.endswith(suffix):
        raise ExportError(
            "the chat template frames messages differently depending on their position, so it cannot be written as an Ollama TEMPLATE."
        )
    return text[: len(text) - len(suffix)] if suffix else text


def measure_frame(tokenizer: Any) -> ChatFrame:
    """Measure the template's frame with sentinel messages, then check it on other conversations."""
    if not getattr(tokenizer, "chat_template", None):
        raise ExportError(
            "the tokenizer has no chat template, so the Modelfile has no TEMPLATE to match; save the run's tokenizer with its template."
        )
    S, U, U2, A = (_SENT[k] for k in ("system", "user", "user2", "assistant"))
    sys_m, user_m = {"role": "system", "content": S}, {"role": "user", "content": U}
    asst_m, user2_m = {"role": "assistant", "content": A}, {"role": "user", "content": U2}

    su = _render(tokenizer, [sys_m, user_m], False)
    su_gen = _render(tokenizer, [sys_m, user_m], True)
    generation = _strip_prefix(su_gen, su)
    _, _, user_post = _split(su, [S, U])
    sys_start, mid_su, mid_ua, assistant_post = _split(_render(tokenizer, [sys_m, user_m, asst_m], False), [S, U, A])
    assistant_pre = _strip_prefix(mid_ua, user_post)
    start_u, _, mid_au, _ = _split(_render(tokenizer, [user_m, asst_m, user2_m], False), [U, A, U2])
    user_pre = _strip_prefix(mid_au, assistant_post)
    frame = ChatFrame(
        head_no_system=_strip_suffix(start_u, user_pre),
        system_pre=sys_start,
        system_post=_strip_suffix(mid_su, user_pre),
        user_pre=user_pre,
        user_post=user_post,
        assistant_pre=assistant_pre,
        assistant_post=assistant_post,
        generation=generation,
    )
    for conversation in _check_conversations():
        want = _render(tokenizer, conversation, True)
        if frame.render(conversation) != want:
            raise ExportError(
                "the chat template is not a fixed frame around each message (it renders "
                f"{len(conversation)}-message conversations differently), so the Modelfile's TEMPLATE "
                "cannot match it; write the TEMPLATE by hand or export without a Modelfile."
            )
    return frame


def _check_conversations() -> list[list[dict[str, str]]]:
    u = lambda t: {"role": "user", "content": t}  # noqa: E731
    a = lambda t: {"role": "assistant", "content": t}  # noqa: E731
    s = {"role": "system", "content": "You are Ada, a beekeeper.\nSpeak plainly."}
    return [
        [u("Hello there!")],
        [s, u("Do you keep bees?")],
        [s, u("Hi."), a("Hello! How can I help?"), u("Tell me about\nyour day.")],
        [u("One"), a("Two"), u("Three"), a("Four"), u("Five")],
    ]


def _go_text(text: str) -> str:
    """Literal text for a Go template: only "{{" would start an action."""
    return '{{ "{{" }}'.join(text.split("{{"))


def go_template(frame: ChatFrame) -> str:
    """The Ollama TEMPLATE (Go text/template over .Messages) that renders like the chat template.

    One line of actions without "{{-" trim markers: the literal text carries the chat template's
    own newlines, which a trim marker would eat.
    """
    t = _go_text
    return (
        '{{ $last := "" }}{{ range $i, $m := .Messages }}'
        f'{{{{ if and (eq $i 0) (ne $m.Role "system") }}}}{t(frame.head_no_system)}{{{{ end }}}}'
        f'{{{{ if eq $m.Role "system" }}}}{t(frame.system_pre)}{{{{ $m.Content }}}}{t(frame.system_post)}'
        f'{{{{ else if eq $m.Role "user" }}}}{t(frame.user_pre)}{{{{ $m.Content }}}}{t(frame.user_post)}'
        f'{{{{ else if eq $m.Role "assistant" }}}}{t(frame.assistant_pre)}{{{{ $m.Content }}}}{t(frame.assistant_post)}'
        "{{ end }}{{ $last = $m.Role }}{{ end }}"
        f'{{{{ if ne $last "assistant" }}}}{t(frame.generation)}{{{{ end }}}}'
    )


def stop_tokens(tokenizer: Any, frame: ChatFrame) -> list[str]:
    """The end-of-turn token and the special tokens that open or close a turn."""
    from engines.models import special_tokens_in

    stops = special_tokens_in(frame.assistant_post + frame.user_pre, tokenizer)
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.insert(0, eos)
    return stops


def _quoted_block(text: str, what: str) -> str:
    if '"""' in text:
        raise ExportError(f'the {what} contains """, which an Ollama Modelfile cannot quote; remove it.')
    return f'"""{text}"""'


def render_modelfile(
    gguf_name: str,
    tokenizer: Any,
    system: str | None = None,
    adapter_name: str | None = None,
    frame: ChatFrame | None = None,
    comment: str = "",
) -> str:
    """The Modelfile text; `gguf_name` (and `adapter_name`) are paths relative to the Modelfile."""
    frame = frame or measure_frame(tokenizer)
    lines = [f"# {line}" for line in comment.splitlines() if line.strip()]
    lines.append(f"FROM {_path(gguf_name)}")
    if adapter_name:
        lines.append(f"ADAPTER {_path(adapter_name)}")
    lines.append(f"TEMPLATE {_quoted_block(go_template(frame), 'chat template')}")
    for stop in stop_tokens(tokenizer, frame):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    if system:
        lines.append(f"SYSTEM {_quoted_block(system, 'persona')}")
    return "\n".join(lines) + "\n"


def _path(name: str) -> str:
    if name.startswith("/"):
        return name
    return name if name.startswith("./") else f"./{name}"


def parse_template(modelfile_text: str) -> str:
    """The TEMPLATE of a Modelfile written by render_modelfile (tests and the report use it)."""
    start = modelfile_text.index('TEMPLATE """') + len('TEMPLATE """')
    return modelfile_text[start : modelfile_text.index('"""', start)]
