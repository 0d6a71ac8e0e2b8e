"""Language-model backends behind one streaming interface (`LanguageModel`); see `base.py`.

`load_backend(spec)` (registry.py) builds any of them from one string; the heavy ones (transformers,
llama.cpp, the bundled Gemma) are imported only when used, so importing this package does not import torch.
"""

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner
from generation.dialogue.backends.registry import BACKEND_HELP, BackendSpecError, load_backend
from generation.dialogue.backends.scripted import ScriptedLM

__all__ = [
    "BACKEND_HELP",
    "BackendSpecError",
    "GenerationParams",
    "LanguageModel",
    "ScriptedLM",
    "StopScanner",
    "load_backend",
]
