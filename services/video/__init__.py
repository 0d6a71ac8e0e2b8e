"""VideoGenerationService: mask-conditioned text-to-video as long-running operations (MVideo)."""
