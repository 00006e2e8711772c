"""Three stages of the flow, each a sub-package with the same three parts (docs/architecture.md):

- `trainers.data`: building datasets (formats x generators) — job `trainers.data.job`, reader
  `trainers.data.reader` (a built dataset's files);
- `trainers.train`: LoRA training — job `trainers.train.job`, reader `trainers.train.reader`
  (a training job's events, loss, checkpoints, result);
- `trainers.export`: merge, GGUF, quantize, Modelfile — job `trainers.export.job`, reader
  `trainers.export.reader` (an export job's report and files).

The typed specs these jobs freeze are the session's (`sessions.model.DatasetSpec`,
`sessions.run_spec`): the session file holds them, and the lowest floor cannot import a stage.
`python -m trainers.worker` (data, train, export jobs) and `python -m trainers.hub_job` (Hub
downloads, which feed both data and train) are the worker entry points job folders name.
"""
