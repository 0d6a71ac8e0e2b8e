"""Contextformer memory (ContextQFormer): the FIFO of turn embeddings and the query transformer that reads it."""
