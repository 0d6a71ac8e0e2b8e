"""A tiny user x item data set with planted structure, for the package's tests (no download needed)."""

from __future__ import annotations

import numpy as np

from recsys.data.movielens import Interactions


def planted_interactions(
    num_users: int = 60, num_items: int = 45, groups: int = 3, per_user: int = 15, seed: int = 0
) -> Interactions:
    """Users and items fall into `groups` tastes; each user rates `per_user` distinct items, 85% from its own
    group (the popular ones more often), at increasing timestamps. A model that learns the groups ranks the
    held-out items far above chance."""
    rng = np.random.default_rng(seed)
    item_group = np.arange(num_items) % groups
    popularity = rng.gamma(1.0, 1.0, num_items) + 0.1
    users, items, times = [], [], []
    for user in range(num_users):
        own = item_group == user % groups
        weights = popularity * np.where(own, 0.85 / popularity[own].sum(), 0.15 / popularity[~own].sum())
        chosen = rng.choice(num_items, size=per_user, replace=False, p=weights / weights.sum())
        users += [user + 1] * per_user
        items += (chosen + 1).tolist()
        times += (1_000 * user + np.arange(per_user)).tolist()
    return Interactions(
        user=np.asarray(users, dtype=np.int64),
        item=np.asarray(items, dtype=np.int64),
        rating=np.ones(len(users), dtype=np.float32),
        timestamp=np.asarray(times, dtype=np.int64),
        user_tokens=np.arange(1, num_users + 1).astype(str),
        item_tokens=np.arange(1, num_items + 1).astype(str),
    )
