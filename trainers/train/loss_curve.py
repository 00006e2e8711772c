"""A run's loss as people should read it: smoothed windows and a smoothed line, not single steps.

One logged step's loss is noise: in the 60-step demo run the first and last single steps read
2.89 -> 2.94 while the means of the first and last ten steps read 3.36 -> 2.77. So every place
that reports a run's loss — `persona-tui train`'s end-of-run line, the demo's summary, the Train
pane — calls `loss_summary`, which compares the *mean* of the first and last windows of logged
steps (10% of them, at least 5 points, never more than half so the windows do not overlap), and
gives the eval loss (held-out data, no dropout noise) first and last. Charts draw `smooth`'s
centred moving mean over the raw points with the same window.

Everything here reads the job's `events.jsonl` (through `loss_points`), so a printed number can be
recomputed from the file it names. No ML library is imported; plotext only for the text chart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

WINDOW_FRACTION = 0.10  # the first and last 10% of logged steps ...
MIN_WINDOW = 5  # ... but at least 5 points, where the run logged at least 10

Point = tuple[int, float]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def loss_points(events: Iterable[dict[str, Any]]) -> tuple[list[Point], list[Point]]:
    """(train, eval) loss points from a training job's events, in step order.

    A resumed run (`train_begin` with `resumed_from`) replaces the steps after its checkpoint,
    so the points are those of the run as it finally went; non-finite losses are left out.
    """
    train: list[Point] = []
    evals: list[Point] = []
    for e in events:
        kind = e.get("event")
        if kind == "train_begin" and isinstance(e.get("resumed_from"), int):
            cut = e["resumed_from"]
            train = [p for p in train if p[0] <= cut]
            evals = [p for p in evals if p[0] <= cut]
        elif kind == "step" and isinstance(e.get("step"), int) and (v := _number(e.get("loss"))) is not None:
            train.append((e["step"], v))
        elif kind == "eval" and isinstance(e.get("step"), int) and (v := _number(e.get("eval_loss"))) is not None:
            evals.append((e["step"], v))
    return train, evals


def summary_window(n: int) -> int:
    """Points in each of the first and last windows for `n` logged steps (0 for none)."""
    if n <= 0:
        return 0
    return max(1, min(max(MIN_WINDOW, math.ceil(n * WINDOW_FRACTION)), n // 2))


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving mean over `window` points (odd windows are exact; an even one uses
    window + 1), shrinking at the ends, so the line starts and ends at the data."""
    half = max(window, 1) // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half) : i + half + 1]
        out.append(sum(part) / len(part))
    return out


@dataclass(frozen=True)
class LossSummary:
    """The loss of a run in numbers that hold still: window means and the eval loss."""

    steps: int  # logged train points
    window: int  # points in each window
    first: float | None  # mean loss of the first `window` logged points
    last: float | None  # mean loss of the last `window` logged points
    first_steps: tuple[int, int] | None  # the steps the first window spans
    last_steps: tuple[int, int] | None
    eval_first: float | None
    eval_last: float | None
    eval_first_step: int | None
    eval_last_step: int | None
    eval_points: int

    def text(self, digits: int = 2) -> str:
        """'loss 3.36 -> 2.77 (mean of the first/last 6 of 60 logged steps), eval loss 3.08 -> 2.65
        (steps 10 -> 60)'; 'no loss logged' when there is nothing."""
        f = f"{{:.{digits}f}}"
        parts = []
        if self.steps:
            if self.steps == 1:
                parts.append(f"loss {f.format(self.first)} (one logged step)")
            else:
                parts.append(
                    f"loss {f.format(self.first)} -> {f.format(self.last)} (mean of the first/last "
                    f"{self.window} of {self.steps} logged steps)"
                )
        if self.eval_points == 1:
            parts.append(f"eval loss {f.format(self.eval_last)} (step {self.eval_last_step})")
        elif self.eval_points > 1:
            parts.append(
                f"eval loss {f.format(self.eval_first)} -> {f.format(self.eval_last)} "
                f"(steps {self.eval_first_step} -> {self.eval_last_step})"
            )
        return ", ".join(parts) or "no loss logged"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loss_summary(train: Sequence[Point], evals: Sequence[Point] = ()) -> LossSummary:
    """Window means of the train loss and the first and last eval loss (see the module's docstring)."""
    n = len(train)
    w = summary_window(n)
    head, tail = list(train[:w]), list(train[n - w :]) if w else []
    return LossSummary(
        steps=n,
        window=w,
        first=sum(v for _, v in head) / w if w else None,
        last=sum(v for _, v in tail) / w if w else None,
        first_steps=(head[0][0], head[-1][0]) if head else None,
        last_steps=(tail[0][0], tail[-1][0]) if tail else None,
        eval_first=evals[0][1] if evals else None,
        eval_last=evals[-1][1] if evals else None,
        eval_first_step=evals[0][0] if evals else None,
        eval_last_step=evals[-1][0] if evals else None,
        eval_points=len(evals),
    )


def summary_of_events(events: Iterable[dict[str, Any]]) -> LossSummary:
    """`loss_summary` of a job's events (what `persona-tui train` and the demo print)."""
    return loss_summary(*loss_points(events))


def loss_chart_text(
    train: Sequence[Point],
    evals: Sequence[Point] = (),
    width: int = 64,
    height: int = 14,
    title: str = "loss",
    smoothed: bool = True,
) -> str:
    """Train (and eval) loss against step as a plotext text chart for terminals and logs: the raw
    points as dots, the smoothed line over them, eval loss as crosses; "" with nothing to draw."""
    if not train:
        return ""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.title(title)
    plt.xlabel("step")
    xs, ys = [s for s, _ in train], [v for _, v in train]
    w = summary_window(len(train))
    if smoothed and w > 1:
        plt.scatter(xs, ys, marker="·", label="train")
        plt.plot(xs, smooth(ys, w), marker="braille", label=f"{w | 1}-step mean")
    else:
        plt.plot(xs, ys, marker="braille", label="train")
    if evals:
        plt.scatter([s for s, _ in evals], [v for _, v in evals], marker="x", label="eval")
    text = re.sub(r"\x1b\[[0-9;]*m", "", plt.build())  # plotext colours even with the clear theme
    plt.clear_figure()
    return "\n".join(line.rstrip() for line in text.splitlines())
