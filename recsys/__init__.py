"""Recommendation engines of the monorepo: MMBee ranking, Dual-Rerank reranking, RGCD-Rep representations.

Shared parts live beside them: `recsys/metrics` (AUC/UAUC/GAUC, Recall/NDCG), `recsys/data`, `recsys/features`.
"""
