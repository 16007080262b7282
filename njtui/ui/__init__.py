"""The Textual terminal UI; it reaches runtimes only through `njtui.runner` (its public face: Runner and its events)."""
