"""Messages that travel up from any pane to the app.

Panes change the in-memory session and say so; the app alone decides when to write the file
(debounced autosave), so two panes never race to save.
"""

from __future__ import annotations

from textual.message import Message


class SessionChanged(Message):
    """A pane changed `session_file.session` in memory.

    `what` is a short phrase for logs and notifications ("renamed persona ada"). `save_now`
    skips the debounce, for changes that must reach disk the moment they are made (a label in
    the Annotate pane).
    """

    def __init__(self, what: str = "", *, save_now: bool = False) -> None:
        super().__init__()
        self.what = what
        self.save_now = save_now
