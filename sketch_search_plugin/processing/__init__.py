"""The Processing provider: Sketch search as an algorithm (toolbox, batch mode, model designer)."""
