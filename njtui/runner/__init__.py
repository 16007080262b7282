"""Runtimes: lifecycle, backends, the agent protocol's client side, recording, the runner log.

Kept free of imports: the host relay imports `njtui.runner.protocol` on every boot.
"""
