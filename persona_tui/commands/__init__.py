"""CLI subcommands, one module each with `add_parser(subparsers)` and `run(args) -> int`.

Register a new module by adding its name to `COMMANDS` in `persona_tui.cli`. Import heavy
libraries inside `run`, never at module level: `persona-tui --help` imports every module here.
"""
