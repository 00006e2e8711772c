"""A run's examples: read the datasets' JSONL files and hand TRL one consistent record shape.

The dataset formats write TRL's standard shapes (see `trainers.data.formats`). A run may list several
datasets, and TRL wants one shape per dataset, with the loss on the completion where there is
one. So:

- one shape in, the same shape out (minus `meta`);
- chats (`messages`) with completion-only loss use TRL's `assistant_only_loss` where the chat
  template marks assistant turns (`{% generation %}`, or TRL ships a training template for it);
  otherwise each assistant turn becomes a conversational prompt/completion pair, which TRL's
  `completion_only_loss` masks with any template;
- mixed shapes (text with chats) are rendered to plain prompt/completion strings through the chat
  template, text as a completion with an empty prompt (loss on every token).

Problems are `RunDataError`s: one sentence naming the file and line, or the dataset, and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.data.formats import check_record, shape_of_record, to_messages


class RunDataError(ValueError):
    """The run's data cannot be used; the message names the file or dataset and the fix."""


@dataclass
class DatasetFile:
    """One dataset of a run as frozen into the job spec."""

    id: str
    format: str
    path: str
    heldout: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetFile:
        return cls(
            id=str(d["id"]), format=str(d.get("format", "")), path=str(d["path"]), heldout=str(d.get("heldout", ""))
        )


@dataclass
class PreparedData:
    """Records in one TRL shape, with the loss options TRL needs for them."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]] = field(default_factory=list)
    shape: str = ""  # messages | prompt_completion_chat | prompt_completion | text | preference
    completion_only_loss: bool = False
    assistant_only_loss: bool = False
    notes: list[str] = field(default_factory=list)  # what was converted, for the job log


def read_jsonl(path: str | Path, dataset_id: str, required: bool = True) -> list[dict[str, Any]]:
    """The records of one JSONL file; a missing, empty or broken file is a RunDataError."""
    path = Path(path)
    if not path.is_file():
        if not required:
            return []
        raise RunDataError(
            f"dataset {dataset_id!r} has no examples file at {path}; build the dataset first "
            f"(Data tab, or persona-tui data SESSION --build {dataset_id})."
        )
    from sessions.jsonl import JsonlLineError
    from sessions.jsonl import read_jsonl as read

    try:
        records = read(path, fix="fix or rebuild the dataset")
    except JsonlLineError as e:
        raise RunDataError(str(e)) from None
    if required and not records:
        raise RunDataError(
            f"dataset {dataset_id!r} is empty ({path} has no records); build it again or remove it from the run."
        )
    return records


def _strip(rec: dict[str, Any], shape: str) -> dict[str, Any]:
    keys = {
        "messages": ("messages",),
        "text": ("text",),
        "prompt_completion": ("prompt", "completion"),
        "prompt_completion_chat": ("prompt", "completion"),
        "preference": ("prompt", "chosen", "rejected"),
    }[shape]
    return {k: rec[k] for k in keys}


def load_records(datasets: list[DatasetFile]) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(train, held-out) records of all datasets as (shape, record) pairs, `meta` dropped."""
    train: list[tuple[str, dict]] = []
    heldout: list[tuple[str, dict]] = []
    for ds in datasets:
        for target, path, required in ((train, ds.path, True), (heldout, ds.heldout, False)):
            if not path:
                continue
            for i, rec in enumerate(read_jsonl(path, ds.id, required=required), 1):
                shape = shape_of_record(rec)
                if shape == "unknown":
                    raise RunDataError(
                        f"{path} record {i} has none of the keys messages, text, prompt/completion or "
                        "prompt/chosen/rejected; rebuild the dataset."
                    )
                problem = check_record(rec, ds.format) if ds.format else None
                if problem:
                    raise RunDataError(f"{path} record {i}: {problem}; rebuild the dataset.")
                target.append((shape, _strip(rec, shape)))
    return train, heldout


def template_marks_assistant(tokenizer: Any) -> bool:
    """True when TRL can mask assistant turns for this tokenizer's chat template."""
    try:
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers
    except ImportError:
        return False
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False
    if isinstance(template, str) and has_generation_markers(template):
        return True
    try:
        get_training_chat_template(tokenizer)
    except Exception:  # noqa: BLE001 - TRL raises ValueError for templates it cannot patch
        return False
    return True


def split_turns(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One conversational prompt/completion pair per assistant turn (the turn is the completion)."""
    pairs = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and i > 0:
            pairs.append({"prompt": [dict(x) for x in messages[:i]], "completion": [dict(m)]})
    return pairs


def _render(tokenizer: Any, shape: str, rec: dict[str, Any]) -> dict[str, str]:
    """A record as a plain prompt/completion string pair (for mixing chats with text)."""
    if shape == "text":
        return {"prompt": "", "completion": rec["text"]}
    if shape == "prompt_completion":
        return rec
    messages = to_messages(rec)
    assert messages is not None
    # The prompt is everything before the last assistant turn; the loss falls on that turn.
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = tokenizer.apply_chat_template(messages[:last], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages[: last + 1], tokenize=False)
    if not full.startswith(prompt):
        raise RunDataError(
            "the chat template renders a conversation's prompt differently from the whole conversation, so "
            "chats cannot be mixed with text datasets for this model; train them in separate runs."
        )
    completion = full[len(prompt) :]
    eos = getattr(tokenizer, "eos_token", None) or ""
    if eos and completion.rstrip("\n").endswith(eos):
        completion = completion.rstrip("\n")  # TRL appends EOS to a completion that lacks it
    return {"prompt": prompt, "completion": completion}


def _convert(
    pairs: list[tuple[str, dict]], tokenizer: Any, completion_only: bool
) -> tuple[list[dict], str, bool, bool, list[str]]:
    shapes = {s for s, _ in pairs}
    notes: list[str] = []
    if not pairs:
        return [], "", False, False, notes
    if "preference" in shapes:
        raise RunDataError('preference pairs (tailoring_dpo) train with method = "dpo", not sft.')
    if shapes == {"messages"}:
        records = [r for _, r in pairs]
        if not completion_only:
            return records, "messages", False, False, notes
        if template_marks_assistant(tokenizer):
            return records, "messages", False, True, notes
        out = [p for r in records for p in split_turns(r["messages"])]
        notes.append(
            f"the chat template has no assistant markers: {len(records)} conversations became {len(out)} "
            "prompt/completion pairs (one per assistant turn) so the loss falls on the assistant's words"
        )
        return out, "prompt_completion_chat", True, False, notes
    if shapes <= {"messages", "prompt_completion_chat"}:
        out = []
        for s, r in pairs:
            out.extend(split_turns(r["messages"]) if s == "messages" else [r])
        notes.append("chats and prompt/completion chats were joined as one prompt/completion pair per assistant turn")
        return out, "prompt_completion_chat", completion_only, False, notes
    if len(shapes) == 1:
        (shape,) = shapes
        return [r for _, r in pairs], shape, completion_only and shape != "text", False, notes
    notes.append(f"mixed record shapes ({', '.join(sorted(shapes))}) were rendered as plain prompt/completion text")
    return [_render(tokenizer, s, r) for s, r in pairs], "prompt_completion", completion_only, False, notes


def prepare_sft(
    datasets: list[DatasetFile], tokenizer: Any, completion_only: bool, with_eval: bool = True
) -> PreparedData:
    """Train (and held-out) records for SFTTrainer in one shape, with the masking to use."""
    train_pairs, heldout_pairs = load_records(datasets)
    records, shape, c_only, a_only, notes = _convert(train_pairs, tokenizer, completion_only)
    eval_records: list[dict] = []
    if with_eval and heldout_pairs:
        # Held-out examples take the same conversion as training ones, so their loss is comparable.
        shapes = {s for s, _ in train_pairs}
        if {s for s, _ in heldout_pairs} <= shapes:
            if shape == "prompt_completion" and len(shapes) > 1:
                eval_records = [_render(tokenizer, s, r) for s, r in heldout_pairs]
            else:
                eval_records, *_ = _convert(heldout_pairs, tokenizer, completion_only)
    return PreparedData(records, eval_records, shape, c_only, a_only, notes)


def prepare_dpo(datasets: list[DatasetFile], with_eval: bool = True) -> PreparedData:
    train_pairs, heldout_pairs = load_records(datasets)
    wrong = {s for s, _ in train_pairs} - {"preference"}
    if wrong:
        raise RunDataError(
            f"method dpo needs preference records (prompt/chosen/rejected), but got {', '.join(sorted(wrong))}."
        )
    eval_records = [r for s, r in heldout_pairs if s == "preference"] if with_eval else []
    return PreparedData([r for _, r in train_pairs], eval_records, "preference")


def to_openai_chat(datasets: list[DatasetFile], method: str) -> list[dict[str, Any]]:
    """Records in OpenAI's fine-tuning JSONL shape: {"messages": [...]}, or its DPO preference shape."""
    train_pairs, _ = load_records(datasets)
    out = []
    for shape, rec in train_pairs:
        if method == "dpo":
            if shape != "preference":
                raise RunDataError("the openai DPO method needs preference records (tailoring_dpo).")
            prompt = rec["prompt"] if isinstance(rec["prompt"], list) else [{"role": "user", "content": rec["prompt"]}]

            def _out(x: Any) -> list[dict[str, str]]:
                return x if isinstance(x, list) else [{"role": "assistant", "content": str(x).strip()}]

            out.append(
                {
                    "input": {"messages": prompt},
                    "preferred_output": _out(rec["chosen"]),
                    "non_preferred_output": _out(rec["rejected"]),
                }
            )
            continue
        messages = to_messages(rec)
        if messages is None:
            raise RunDataError(f"the openai backend fine-tunes on chats, and a {shape} record is not one.")
        out.append({"messages": messages})
    return out
