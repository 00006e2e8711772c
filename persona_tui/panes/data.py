"""Data pane: placeholder until the data capability lands (its helper replaces this module)."""

from persona_tui.widgets.planned import PlannedPane


class DataPane(PlannedPane):
    TITLE = "Data"
    BODY = (
        "This tab will turn a persona into training sets: pick a persona, a format (chat demos, "
        "first-person statements, synthetic documents, Synthetic-Persona-Chat next turns, "
        "persona-tailoring SFT or DPO pairs), a size and a generator (offline templates, or any "
        "model as the teacher). The build runs as a background job with a progress bar; then "
        "browse, edit and delete examples, see statistics and a chat-template preview, and "
        "export to OpenAI, ShareGPT, Alpaca, TRL or Hugging Face datasets."
    )
