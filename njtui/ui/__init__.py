"""The Textual terminal UI; it reaches runtimes only through njtui.runner.runner.Runner."""
