def main():
    raise SystemExit("persona-tui: not built yet")
