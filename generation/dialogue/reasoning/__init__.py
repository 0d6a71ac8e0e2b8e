"""Reasoning before replying: versioned prompt templates, structured outputs with bounded retries, the dual chain
of thought over several clips, the ripple of thought for replies and quick comments, comment ranking and
topic-drift control (see each module's docstring). Nothing here imports torch; encoders are passed in."""

from generation.dialogue.reasoning.comments import extractive_comments, rank_comments
from generation.dialogue.reasoning.dcot import Reasoning, direct_prompt, dual_chain_of_thought, extract_chains
from generation.dialogue.reasoning.rot import ripple_of_thought
from generation.dialogue.reasoning.structured import Cancelled, StructuredOutputError, generate_structured
from generation.dialogue.reasoning.templates import REPLY_STOP, TEMPLATES, render
from generation.dialogue.reasoning.topic import TopicGuard

__all__ = [
    "REPLY_STOP",
    "TEMPLATES",
    "Cancelled",
    "Reasoning",
    "StructuredOutputError",
    "TopicGuard",
    "direct_prompt",
    "dual_chain_of_thought",
    "extract_chains",
    "extractive_comments",
    "generate_structured",
    "rank_comments",
    "render",
    "ripple_of_thought",
]
