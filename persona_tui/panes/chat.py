"""Chat pane: placeholder until the export/chat capability lands."""

from persona_tui.widgets.planned import PlannedPane


class ChatPane(PlannedPane):
    TITLE = "Chat"
    BODY = (
        "This tab will let you talk to your models: pick one or two engines (the base model, a "
        "run's adapter, an exported GGUF, or any OpenAI-compatible endpoint), send the same "
        "message to both with the same sampling settings and seed, and watch the replies stream "
        "side by side. A switch takes the persona out of the system prompt, so what remains is "
        "what the weights learned; any reply can be sent to annotation."
    )
