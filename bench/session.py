"""What one session save costs, as the Annotate pane pays it for every label.

Labels are saved the moment they are given (never lost to a closed terminal), so a save has to
cost milliseconds even in a session with hundreds of labels. Each row edits the demo session and
times `SessionFile.save()` (validate, merge into the hand-edited TOML, temp file, fsync, backup,
rename), median of `--runs`. Baselines, measured in the same run on the same folder:
`atomic_write` of the same text (the disk's share: fsync + rename), and `tomlkit.dumps` of it
(the serialiser's share).

    .venv/bin/python bench/session.py [--runs 15] [--labels 200,1000]

Target: a label saved in under 50 ms with 200 labels in the session on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tomlkit  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sessions.demo import demo_session  # noqa: E402
from sessions.model import Annotation  # noqa: E402
from sessions.store import SessionFile, atomic_write  # noqa: E402

TARGET_S = 0.05


def median_seconds(fn, runs: int) -> float:
    timings = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        timings.append(time.perf_counter() - t)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--labels", default="0,200,1000", help="labels already in the session, per row")
    args = parser.parse_args()
    table = Table(title=f"one save, median of {args.runs} (load average {os.getloadavg()[0]:.2f})")
    for col in (
        "labels in session",
        "file KiB",
        "atomic_write ms",
        "tomlkit.dumps ms",
        "save() ms",
        "× atomic_write",
        "target",
    ):
        table.add_column(col, justify="right")
    verdicts = []
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(x) for x in args.labels.split(",")):
            session = demo_session()
            session.annotations += [Annotation(output=f"job:{i}", annotator="sam", consistency=3) for i in range(n)]
            sf = SessionFile.create(Path(folder) / f"s{n}.toml", session)
            text = sf.path.read_text()
            disk = median_seconds(lambda i: atomic_write(Path(folder) / "plain.toml", text), args.runs)
            doc = tomlkit.parse(text)
            dumps = median_seconds(lambda i: tomlkit.dumps(doc), args.runs)

            def label(i: int) -> None:
                sf.session.annotations.append(
                    Annotation(output=f"job:new{i}", annotator="sam", trait_labels={"keeps-bees": "expressed"})
                )
                assert sf.save()

            save = median_seconds(label, args.runs)
            ok = save < TARGET_S
            verdicts.append(ok or n > 200)
            table.add_row(
                str(n),
                f"{len(text) / 1024:.0f}",
                f"{disk * 1e3:.1f}",
                f"{dumps * 1e3:.1f}",
                f"{save * 1e3:.1f}",
                f"{save / disk:.1f}",
                ("met" if ok else "missed") if n <= 200 else "-",
            )
    Console(width=120).print(table)
    print(
        "verdict:",
        "PASS" if all(verdicts) else "FAIL",
        f"(a label saved in < {TARGET_S * 1e3:.0f} ms with up to 200 labels)",
    )


if __name__ == "__main__":
    main()
