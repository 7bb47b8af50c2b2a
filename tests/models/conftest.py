"""Fixtures of the model-specific tests: a small clustered dataset, fitted quickly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset


def clustered_interactions(
    seed: int, n_users: int = 200, n_items: int = 150, n_clusters: int = 6
) -> pd.DataFrame:
    """Each user draws 10-24 distinct items, 80% from their own cluster, with timestamps."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, size=n_items)
    appeal = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.5
    rows = []
    for u in range(n_users):
        own = np.where(cluster == rng.integers(n_clusters), appeal, 0.0)
        p = 0.8 * own / own.sum() + 0.2 * appeal / appeal.sum()
        n = int(rng.integers(10, 25))
        items = rng.choice(n_items, size=n, replace=False, p=p)
        times = 1_600_000_000 + np.sort(rng.integers(0, 30 * 86_400, size=n))
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, times, strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.fixture(scope="session")
def clustered_data() -> Dataset:
    """200 users x 150 items, about 3,400 interactions with cluster structure."""
    return Dataset.from_frames(clustered_interactions(seed=3))
