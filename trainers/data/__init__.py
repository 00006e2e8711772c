"""The data stage: a session's DatasetSpec built into `<workspace>/datasets/<id>.jsonl`.

`job` (kind "dataset": frozen inputs, `run`), `build` (format x generator, dedupe, split,
statistics), `formats/` and `generate/` (what an example looks like and who writes it), `quality`
(near-duplicates, distinct-n), `export` (a built dataset in other tools' shapes) and `reader`: the
one place that reads (and writes) a built dataset's files. Imports neither the train nor the
export stage.
"""
