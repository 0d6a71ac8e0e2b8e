"""Reasoning before replying: versioned prompt templates, structured outputs with bounded retries, the dual chain
of thought over several clips, the ripple of thought for replies and quick comments, comment ranking and
topic-drift control (see each module's docstring)."""
