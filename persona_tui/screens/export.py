"""The export dialog of a finished training job: which GGUFs (with their expected sizes from the
base model's parameter count), the LoRA GGUF, Ollama Modelfiles, verification on or off.

Returns what `trainers.export.job.create_export_job` takes (quants and options), or None.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Static

DEFAULT_CHECKED = ("q8_0", "q4_k_m")  # the CLI's default too


def size_text(n: int | None) -> str:
    if not n:
        return "size unknown"
    return f"≈{n / 1e9:.1f} GB" if n >= 1e9 else f"≈{n / 1e6:.0f} MB"


class ExportScreen(ModalScreen[dict[str, Any] | None]):
    CSS_PATH = "modals.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, job_id: str, base_model: str, params: int | None, sizes: dict[str, int | None]) -> None:
        super().__init__()
        self.job_id, self.base_model, self.params, self.sizes = job_id, base_model, params, sizes

    def compose(self) -> ComposeResult:
        from trainers.export.job import DIALOG_QUANTS

        count = f"{self.params / 1e6:.1f} M parameters" if self.params else "parameter count unknown"
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label(f"Export {self.job_id}", classes="dialog-title", markup=False)
            yield Static(
                f"{self.base_model} + the run's adapter, merged; {count}. F16 GGUF always "
                f"({size_text(self.sizes.get('f16'))}): the quantizations are made from it.",
                classes="dialog-help",
                markup=False,
            )
            with VerticalScroll(id="export-options"):
                for q in DIALOG_QUANTS:
                    yield Checkbox(
                        f"{q:<7} {size_text(self.sizes.get(q))}", q in DEFAULT_CHECKED, id=f"export-q-{q}", compact=True
                    )
                yield Checkbox(
                    "LoRA GGUF (the adapter alone, for llama.cpp --lora)", True, id="export-lora", compact=True
                )
                yield Checkbox("Ollama Modelfile beside each GGUF", True, id="export-modelfile", compact=True)
                yield Checkbox(
                    "verify each GGUF against the merged model (top-1, KL)", True, id="export-verify", compact=True
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export-ok", compact=True)
                yield Button("Cancel", id="export-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-ok", Button).focus()

    def chosen(self) -> dict[str, Any]:
        from trainers.export.job import DIALOG_QUANTS

        def ticked(wid):
            return self.query_one(f"#{wid}", Checkbox).value

        return {
            "quants": [q for q in DIALOG_QUANTS if ticked(f"export-q-{q}")],
            "options": {
                "adapter_gguf": ticked("export-lora"),
                "modelfile": ticked("export-modelfile"),
                "verify": ticked("export-verify"),
            },
        }

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.chosen() if event.button.id == "export-ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
