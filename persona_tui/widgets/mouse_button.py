"""A button for the mouse that the keyboard skips: its action already has a key binding."""

from textual.widgets import Button


class MouseButton(Button, can_focus=False):
    """Keeps Tab moving between fields instead of stopping on every row button."""
