"""Dual-Rerank (arXiv 2604.07420) generative list reranking: a whole-page utility simulator, an autoregressive
teacher distilled into a non-autoregressive student (NAR4Rec, arXiv 2402.06871), LDRO list-wise RL."""
