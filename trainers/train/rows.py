"""Micro-batches without padding: a micro-batch's examples packed into rows as wide as its longest
example, each example a segment of its own (position ids restarting at 0, no attention mask).

transformers reads the restarts as separate sequences and masks attention to each segment's own
tokens, so the loss is the padded batch's: the same tokens, labels and count. Against the padded
batch it skips the padding; against one row holding every example (TRL's `padding_free`
collator) it keeps attention at rows x width² rather than (sum of lengths)². The demo's run took
2.9 s a step in rows against 4.1-4.3 s padded, while one flat row ran 5% slower than padded
batches on alike-length chats (docs/training.md, "Micro-batches without padding"). Examples of alike length fit one to a
row, and the layout is then the padded batch's.

What is left over at a row's end is pad tokens in a segment of their own, labelled -100; it
attends only to itself. `real_tokens` counts a batch's tokens without it.

No torch at import: the app imports the run settings that name this.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100


def pack_rows(lengths: list[int]) -> list[list[int]]:
    """Example indices per row: first fit, longest first, into rows as wide as the longest."""
    if not lengths:
        return []
    width = max(lengths)
    rows: list[list[int]] = []
    used: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, filled in enumerate(used):
            if filled + lengths[i] <= width:
                rows[r].append(i)
                used[r] += lengths[i]
                break
        else:
            rows.append([i])
            used.append(lengths[i])
    return rows


class RowsCollator:
    """Examples (`input_ids`, optional `labels` with -100 outside the loss, as TRL prepares them)
    -> `input_ids`, `labels`, `position_ids`. Each example's first label is -100, as in TRL's
    padding-free collator: the token before it belongs to another example."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [list(e["input_ids"]) for e in examples]
        labels = [list(e.get("labels", e["input_ids"])) for e in examples]
        rows = pack_rows([len(x) for x in ids])
        width = max((len(x) for x in ids), default=0)
        out_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        out_labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        out_pos = torch.zeros((len(rows), width), dtype=torch.long)
        for r, members in enumerate(rows):
            start = 0
            for i in members:
                n = len(ids[i])
                out_ids[r, start : start + n] = torch.tensor(ids[i])
                out_labels[r, start : start + n] = torch.tensor(labels[i])
                out_pos[r, start : start + n] = torch.arange(n)
                start += n
            out_pos[r, start:] = torch.arange(width - start)  # the leftover: a segment of its own
        out_labels[out_pos == 0] = IGNORE
        return {"input_ids": out_ids, "labels": out_labels, "position_ids": out_pos}


def real_tokens(inputs: dict[str, Any], pad_token_id: int) -> int:
    """A rows batch's tokens without each row's leftover: the last segment, when it is pad tokens
    only and holds no label (an example always holds a token other than the pad, or a label)."""
    ids, pos, labels = inputs["input_ids"], inputs["position_ids"], inputs["labels"]
    total = ids.numel()
    for r in range(ids.shape[0]):
        starts = (pos[r] == 0).nonzero().flatten()
        last = int(starts[-1]) if len(starts) else 0
        if last > 0 and bool((ids[r, last:] == pad_token_id).all()) and bool((labels[r, last:] == IGNORE).all()):
            total -= ids.shape[1] - last
    return total
