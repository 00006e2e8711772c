"""The workbench's panes, one module each.

Contract with the app (`persona_tui.app`): each pane is a widget class constructed with
keyword arguments only (`id=`); before it is mounted the app sets its `session_file`
attribute (a `sessions.store.SessionFile`). A pane edits `session_file.session` in memory and
posts `persona_tui.messages.SessionChanged`; it never saves the file itself.
"""
