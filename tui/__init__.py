"""The Textual dashboard (a separate process from the agent)."""
