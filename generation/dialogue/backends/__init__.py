"""Language-model backends behind one streaming interface (`LanguageModel`); see `base.py`."""

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner
from generation.dialogue.backends.scripted import ScriptedLM

__all__ = ["GenerationParams", "LanguageModel", "ScriptedLM", "StopScanner"]
