"""njtui: a keyboard-driven terminal notebook whose cells run in reproducible runtimes."""

__version__ = "0.1.0"
