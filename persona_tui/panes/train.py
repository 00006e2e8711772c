"""Train pane: placeholder until the training capability lands (its helper replaces this module)."""

from persona_tui.widgets.planned import PlannedPane


class TrainPane(PlannedPane):
    TITLE = "Train"
    BODY = (
        "This tab will configure LoRA runs in a form with the defaults filled in and validated "
        "as you type, start them as background jobs that survive a closed terminal, and draw "
        "them live: train and eval loss against step, learning rate, tokens/s, progress and "
        "ETA, the last log lines, several runs on one chart, cancel and resume, and the CPU, "
        "RAM or GPU the run is using."
    )
