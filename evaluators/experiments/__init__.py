"""The prior studies, each redone in one command (`persona-tui experiment`).

- `format_comparison`: which training format (chat demos, first-person statements, synthetic
  documents) injects a persona, by knowledge vs expression, cross-format perplexity, a judge;
- `persona_chat`: fine-tuning on Synthetic-Persona-Chat next turns against prompt-only baselines,
  scored with the reference-metric table;
- `tailoring`: SFT and DPO with personas against without, and a few-shot prompt-only baseline,
  plus persona-inference accuracy.

Every study strings together work that already exists — dataset, training, export and eval jobs
— through `runner.Experiment`, which records each finished step in `state.json` so that a rerun
never redoes one (`state`). Nothing here imports Textual.
"""

STUDIES = ("format-comparison", "persona-chat", "tailoring")
