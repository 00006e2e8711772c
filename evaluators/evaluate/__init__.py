"""The evaluate stage: an EvalSpec of the session run as a job that scores models.

`spec` (what an EvalSpec of each kind may say, checked; `build_job_spec` freezes it), `job` (kind
"eval": `create_eval_job`, `run`, `record_results`), `state` (what every kind shares: `Run`,
reading the records scored), one module per kind of evaluation (`reference`, `traits`, `pairwise`
for the judge, `tailoring`, `perplexity`; drift's work is evaluators.drift), `queue` (kind
"eval_queue": a parent job running eval jobs in order), `presets` (a first evaluation of each kind,
as the Evaluate pane starts them) and `reader`: the one reader of eval jobs' products
(scores.json, outputs.jsonl, the summary the session keeps). The index of every result, eval jobs
and experiments together, is evaluators.results.
"""
