"""KuaiMM dialogue: sessions over videos and live streams, Contextformer memory, dual chain-of-thought and
ripple-of-thought replies, language-model backends (see README.md in this folder)."""
