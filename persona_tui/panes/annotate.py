"""Annotate pane: placeholder until the annotation capability lands."""

from persona_tui.widgets.planned import PlannedPane


class AnnotatePane(PlannedPane):
    TITLE = "Annotate"
    BODY = (
        "This tab will be your labelling queue: replies from evaluations and chat, one at a "
        "time, with keys to mark each trait expressed / not shown / contradicted, rate overall "
        "persona consistency 1-5, add a note, skip or undo, optionally blind to which model "
        "wrote it. Every label is saved the moment you give it, and the judge's and the "
        "metrics' agreement with your labels is reported (Cohen's kappa, Spearman rho)."
    )
