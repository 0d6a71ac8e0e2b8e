"""Generation engines of the kmono monorepo: mask sequences from video (masks), mask-conditioned video (mvideo), dialogue."""
