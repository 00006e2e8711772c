"""A job's events.jsonl as the files other tools read: CSV, or TensorBoard event files.

Any job can be converted, whether or not it ran with `report_to = "tensorboard"`: the numbers of
its `step` events become `train/<name>` scalars and those of its `eval` events `eval/<name>`
(the `eval_` prefix dropped), at their step and wall time, as transformers' own TensorBoard
callback names them. CSV needs nothing beyond the standard library; TensorBoard files are
written with TensorBoard's own event writer (the `tensorboard` package, no torch).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path

from supervisor import jobs

FORMATS = ("csv", "tensorboard")
SCALAR_EVENTS = {"step": "train", "eval": "eval"}
_NOT_SCALARS = {"t", "step", "event", "max_steps"}
TB_PREFIX = "events.out.tfevents."  # how TensorBoard's writer names its files


class ExportEventsError(ValueError):
    """The events cannot be converted; one sentence with the fix."""


def scalars(job_dir: str | os.PathLike[str]) -> Iterator[tuple[str, int, float, float]]:
    """(tag, step, value, wall time) of every number in the job's step and eval events, in order."""
    events, _ = jobs.read_events(job_dir)
    for e in events:
        group = SCALAR_EVENTS.get(str(e.get("event")))
        step = e.get("step")
        if group is None or not isinstance(step, int) or isinstance(step, bool):
            continue
        for key, value in e.items():
            if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            name = key.removeprefix("eval_") if group == "eval" else key
            yield f"{group}/{name}", step, float(value), float(e.get("t") or 0.0)


def default_out(job_dir: Path, fmt: str) -> Path:
    return job_dir / ("events.csv" if fmt == "csv" else "tensorboard-export")


def export_events(
    job_dir: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str] | None = None
) -> tuple[Path, int]:
    """Write the job's scalars as `fmt` to `out` (a .csv file, or a folder for TensorBoard);
    return the path and how many values were written."""
    job_dir = Path(job_dir)
    if fmt not in FORMATS:
        raise ExportEventsError(f"--format is {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if not (job_dir / jobs.EVENTS_FILE).is_file():
        raise ExportEventsError(f"{job_dir} has no {jobs.EVENTS_FILE}, so there is nothing to convert.")
    rows = list(scalars(job_dir))
    if not rows:
        raise ExportEventsError(f"job {job_dir.name} has no step or eval events with numbers to convert.")
    target = Path(out).expanduser() if out else default_out(job_dir, fmt)
    if fmt == "csv":
        from sessions.store import atomic_write

        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, _csv_text(rows), backup=False)
    else:
        old = sorted(target.glob(f"{TB_PREFIX}*")) if target.is_dir() else []
        if old and target != default_out(job_dir, fmt):
            raise ExportEventsError(
                f"{target} already holds TensorBoard event files ({old[0].name}); "
                "name an empty or new folder with --out."
            )
        _write_tensorboard(target, rows)
        for f in old:  # the previous export of this job, replaced (after the new one is whole)
            f.unlink(missing_ok=True)
    return target, len(rows)


def _csv_text(rows: list[tuple[str, int, float, float]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["tag", "step", "value", "wall_time"])
    for tag, step, value, t in rows:
        writer.writerow([tag, step, repr(value), f"{t:.3f}"])
    return buf.getvalue()


def _write_tensorboard(folder: Path, rows: list[tuple[str, int, float, float]]) -> None:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise ExportEventsError(
            "writing TensorBoard files needs the tensorboard package; install it (pip install tensorboard) "
            "or use --format csv."
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(folder))
    try:
        for tag, step, value, t in rows:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=t, step=step, summary=summary))
    finally:
        writer.close()


def read_tensorboard_scalars(folder: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard's own EventAccumulator reads the folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags().get("scalars", [])}
