"""The experiments' names for the one model resolver, which lives in evaluators.run_models
(the grammar — `base`, `run:ID`, `job:ID`, `export:ID[:TYPE]`, engine ids, paths — and the
preference order are documented there)."""

from __future__ import annotations

from evaluators.run_models import (  # noqa: F401  (re-exported for the experiments and the Evaluate pane)
    BASE,
    DEFAULT_BASE_MODEL,
    EXPORT_PREFIX,
    JOB_PREFIX,
    RUN_PREFIX,
    base_engine,
    base_model_of,
    finished_train_jobs,
    job_engine,
    run_engine,
    run_resolver,
)
