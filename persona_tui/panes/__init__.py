"""The workbench's panes, one module each.

Contract with the app (`persona_tui.app`):
- each pane is a widget class constructed with keyword arguments only (`id=`); before it is
  mounted the app sets its `session_file` attribute (a `sessions.store.SessionFile`);
- a pane edits `session_file.session` in memory and posts `persona_tui.messages.SessionChanged`
  (`save_now=True` for what must reach disk at once); it never saves the file itself, and it
  does not change the session merely by being shown (filling a form is not an edit);
- the first tab's pane is composed with the screen; the others are imported and mounted when
  their tab is first opened (key, click or palette). Tests reach a pane by pressing its tab's
  number key or with `await app.pane("data")`; a command that opens on another tab passes
  `PersonaApp(..., initial_tab="annotate")`. A pane that must work while hidden (following a
  job) starts when first shown;
- a pane may define `focus_default()` (where the keyboard goes when its tab opens);
- its layout may live in `panes/<name>.tcss`, which the app loads.
"""
