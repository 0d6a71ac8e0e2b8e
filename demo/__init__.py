"""`make demo`, the main job: see main.py. Its own package so it may import every service without a cycle."""

from demo.main import EXTRA_ARGS, PROBE_CALLS, main

__all__ = ["EXTRA_ARGS", "PROBE_CALLS", "main"]
