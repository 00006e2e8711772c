"""Modal screens: prompts, confirmations and editors pushed over the main screen."""
