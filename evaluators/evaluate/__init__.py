"""The evaluate stage: an EvalSpec of the session run as a job that scores models.

`spec` (the typed EvalSpec: kinds, models, data, and its validation), `job` (kind "eval":
`create_eval_job`, `run`, the state every kind shares), one module per kind of evaluation
(`reference`, `traits`, `pairwise` for the judge, `tailoring`, `perplexity`; drift's work is
evaluators.drift), `queue` (kind "eval_queue": a parent job running eval jobs in order), `presets`
(the settings a first evaluation of each kind starts from) and `reader`: the one reader of eval
jobs' products (scores.json, outputs.jsonl) and the index of results the Evaluate pane lists.
"""
