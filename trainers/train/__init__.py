"""The train stage: a RunSpec trained as a job into `<workspace>/jobs/<id>/` (events, checkpoints,
adapter, result.json).

`job` (kind "train": the frozen spec, `create_train_job`, `resume_train_job`, `run`), `backends/`
(hf, unsloth, openai behind one protocol), `run_data` (the datasets' records in one shape for the
trainer), `hardware`, `gpus`, `memory_estimate` (what the machine offers and whether a run fits),
`metrics` (what the worker logs), and what reads a run back: `reader` (events, loss, checkpoints,
result), `loss_curve` (loss as people should read it) and `event_export` (CSV, TensorBoard).
Reads the data stage's record shapes; never imports the export stage.
"""
