"""`kmono dialogue`: the KuaiMM evaluation and memory training commands (a package of its own: it imports the
knowledge, memory and reasoning packages, which import `generation.dialogue.types`)."""

from generation.dialogue.cli.main import register

__all__ = ["register"]
