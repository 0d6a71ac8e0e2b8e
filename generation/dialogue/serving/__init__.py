"""What the DialogueService serves: the dialogue engine (`engine.DialogueEngine`), its durable session store
(`store.SessionStore`), its settings (`settings.DialogueSettings`) and a tiny engine for tests (`testing`).

A package of its own, not modules of `generation.dialogue`: the engine composes the knowledge, reasoning, memory
and backend packages, which all import the contract (`generation.dialogue.types`), so an engine beside the
contract would make the packages an import cycle Bazel cannot build (as `recsys.rerank.serving` does for rerank).
"""
