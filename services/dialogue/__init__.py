"""DialogueService: multimodal dialogue sessions with streamed replies (KuaiMM)."""
