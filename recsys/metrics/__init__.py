"""Offline metrics every recommender of the monorepo reports the same way (see ranking.py).

from recsys.metrics import auc, uauc, gauc, recall_at_k, ndcg_at_k
"""

from recsys.metrics.ranking import auc, gauc, grouped_auc, ndcg_at_k, recall_at_k, uauc

__all__ = ["auc", "gauc", "grouped_auc", "ndcg_at_k", "recall_at_k", "uauc"]
