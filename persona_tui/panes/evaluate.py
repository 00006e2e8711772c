"""Evaluate pane: placeholder until the evaluation capability lands."""

from persona_tui.widgets.planned import PlannedPane


class EvaluatePane(PlannedPane):
    TITLE = "Evaluate"
    BODY = (
        "This tab will measure how well a persona took: reference metrics on held-out data "
        "(BLEU, ROUGE-L, BERTScore, perplexity, hits@1, unigram F1), the cross-format "
        "perplexity matrix, per-trait knowledge vs expression rates with 95% intervals, and a "
        "position-swapped LLM judge. Evaluations run as background jobs; their results stay in "
        "the session as tables and bar charts to compare runs."
    )
