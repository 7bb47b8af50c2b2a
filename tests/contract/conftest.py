"""Fixtures of the contract suite: datasets with real signal, a holdout, every model.

Users each prefer one cluster of items and draw most of their interactions from it,
so a model that learns co-occurrence beats popularity, which beats chance. Items carry
metadata (title, text, categories) that names their cluster, noisily, so content models
have signal too; every item has interactions, so the metadata adds no cold items.
Users carry a ``segment`` attribute that names their preferred cluster, noisily, so
context (segment) popularity has signal; trending is measured on the same data plus a
wave of new releases at the end (see ``QUALITY_DATA``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.models import available_models

# Parameters that keep every fit in the suite well under a second; models added to the
# registry later are tested with their defaults unless listed here.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"k": 50},
    "als": {"factors": 16, "iterations": 5, "regularization": 1.0},
    "ease": {"l2": 20.0},
    "two_tower": {"embedding_dim": 32, "epochs": 5, "num_threads": 1},
}

HELD_OUT_PER_USER = 3
DAY = 86_400


def make_interactions(
    seed: int,
    *,
    n_users: int = 300,
    n_items: int = 400,
    n_clusters: int = 10,
    cluster_share: float = 0.85,
) -> pd.DataFrame:
    """Interactions with timestamps: each user draws 15-34 distinct items.

    A user's items come from their preferred cluster with probability
    ``cluster_share``, else from the whole catalogue; within a cluster and overall,
    item popularity is long-tailed. Ids are strings like ``u12`` and ``i345``.
    """
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    tail = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.6  # long-tailed item appeal
    global_p = tail / tail.sum()
    cluster_p = np.zeros((n_clusters, n_items))
    for c in range(n_clusters):
        members = item_cluster == c
        cluster_p[c, members] = tail[members] / tail[members].sum()
    cluster_weight = rng.dirichlet(np.full(n_clusters, 3.0))
    start = 1_600_000_000
    rows = []
    for u in range(n_users):
        c = rng.choice(n_clusters, p=cluster_weight)
        p = cluster_share * cluster_p[c] + (1 - cluster_share) * global_p
        n = int(rng.integers(15, 35))
        items = rng.choice(n_items, size=n, replace=False, p=p)
        times = start + np.sort(rng.integers(0, 60 * DAY, size=n))
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, times, strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


CLUSTER_GENRES = (
    "drama", "comedy", "horror", "western", "romance",
    "sci-fi", "documentary", "musical", "thriller", "animation",
)  # fmt: skip
WORDS_PER_CLUSTER = 8


def make_items(seed: int, *, n_items: int = 400, n_clusters: int = 10) -> pd.DataFrame:
    """Item metadata matching ``make_interactions(seed, n_items=..., n_clusters=...)``.

    Each item's categories are its cluster's genre (and, for one in five, a random
    second genre); its text draws words mostly from its cluster's own word list and
    some from a shared one. Ids are ``i0`` ... like the interactions'.
    """
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, size=n_items)  # same draw as the interactions
    words = np.random.default_rng(seed + 1000)
    shared = [f"common{j}" for j in range(20)]
    rows = []
    for i, c in enumerate(item_cluster):
        genre = CLUSTER_GENRES[c % len(CLUSTER_GENRES)]
        categories = [genre]
        if words.random() < 0.2:
            categories.append(CLUSTER_GENRES[int(words.integers(len(CLUSTER_GENRES)))])
        own = [f"{genre.replace('-', '')}word{j}" for j in range(WORDS_PER_CLUSTER)]
        text = [*words.choice(own, size=4, replace=False), *words.choice(shared, size=2)]
        rows.append((f"i{i}", f"Item {i}", " ".join(text), "|".join(dict.fromkeys(categories))))
    return pd.DataFrame(rows, columns=["item_id", "title", "text", "categories"])


def make_users(
    seed: int, *, n_users: int = 300, n_items: int = 400, n_clusters: int = 10
) -> pd.DataFrame:
    """User attributes matching ``make_interactions(seed, ...)`` with the same sizes.

    ``segment`` is ``s<c>`` for the cluster most of the user's items belong to (their
    preferred one) for four users in five, and a random cluster for the others.
    """
    item_cluster = np.random.default_rng(seed).integers(0, n_clusters, size=n_items)
    frame = make_interactions(seed, n_users=n_users, n_items=n_items, n_clusters=n_clusters)
    clusters = item_cluster[frame["item_id"].str[1:].astype(int).to_numpy()]
    counts = pd.crosstab(frame["user_id"], clusters)
    main = counts.idxmax(axis=1)
    noise = np.random.default_rng(seed + 3000)
    random_cluster = noise.integers(0, n_clusters, size=len(main))
    segment = np.where(noise.random(len(main)) < 0.8, main.to_numpy(), random_cluster)
    return pd.DataFrame({"user_id": main.index.astype(str), "segment": [f"s{c}" for c in segment]})


def add_new_releases(
    interactions: pd.DataFrame,
    seed: int,
    *,
    n_new: int = 15,
    share: float = 0.9,
    release_day: int = 50,
) -> pd.DataFrame:
    """The interactions plus a wave of ``n_new`` items (``new0`` ...) released on day
    ``release_day``: ``share`` of the users each take one to three of them after the
    release, so what is popular lately differs from what is popular all time."""
    rng = np.random.default_rng(seed + 5000)
    appeal = rng.dirichlet(np.ones(n_new))
    first, last = int(interactions["timestamp"].min()), int(interactions["timestamp"].max())
    rows = []
    for user in interactions["user_id"].unique():
        if rng.random() >= share:
            continue
        k = int(rng.integers(1, 4))
        items = rng.choice(n_new, size=k, replace=False, p=appeal)
        times = rng.integers(first + release_day * DAY, last + 1, size=k)
        rows += [(user, f"new{i}", int(t)) for i, t in zip(items, times, strict=True)]
    wave = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return pd.concat([interactions, wave], ignore_index=True)


# Models whose signal is not in taste: their quality test runs on a dataset made for
# them (the name of a session fixture) instead of the main one. Trending ranks by
# recent popularity, which only differs from all-time popularity when tastes move.
QUALITY_DATA: dict[str, str] = {"trending": "new_releases_data"}


@dataclass(frozen=True)
class Holdout:
    """Train part and, per evaluated user, the held-out items (dense indices)."""

    train: Dataset
    users: np.ndarray
    held_out: list[set[int]]


def last_items_holdout(data: Dataset, per_user: int = HELD_OUT_PER_USER) -> Holdout:
    """Each user's latest ``per_user`` interactions are held out (all users have 15+)."""
    order = np.lexsort((data.timestamps, data.user_idx))
    user_sorted = data.user_idx[order]
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - first[user_sorted]
    held = np.zeros(data.n_interactions, dtype=bool)
    held[order[position >= counts[user_sorted] - per_user]] = True
    train = data.subset(~held)
    users = np.unique(data.user_idx[held])
    by_user: dict[int, set[int]] = {int(u): set() for u in users}
    for u, i in zip(data.user_idx[held], data.item_idx[held], strict=True):
        by_user[int(u)].add(int(i))
    return Holdout(train=train, users=users, held_out=[by_user[int(u)] for u in users])


@pytest.fixture(scope="session")
def synthetic_data() -> Dataset:
    """The suite's main dataset: 300 users, 400 items, about 7,500 interactions."""
    return Dataset.from_frames(make_interactions(seed=7), make_items(seed=7), make_users(seed=7))


@pytest.fixture(scope="session")
def other_data() -> Dataset:
    """A second, different dataset (other seed and sizes) for the refit test."""
    return Dataset.from_frames(
        make_interactions(seed=11, n_users=200, n_items=250),
        make_items(seed=11, n_items=250),
        make_users(seed=11, n_users=200, n_items=250),
    )


@pytest.fixture(scope="session")
def new_releases_data() -> Dataset:
    """The main interactions plus a wave of new releases in the last ten days."""
    return Dataset.from_frames(add_new_releases(make_interactions(seed=7), seed=7))


@functools.cache
def _last_items_holdout(data: Dataset) -> Holdout:
    return last_items_holdout(data)  # datasets hash by identity: one holdout per fixture


@pytest.fixture
def holdout(model_name: str, request: pytest.FixtureRequest) -> Holdout:
    """The model's quality dataset (the main one unless ``QUALITY_DATA`` names another)
    with each user's last three interactions held out."""
    data = request.getfixturevalue(QUALITY_DATA.get(model_name, "synthetic_data"))
    return _last_items_holdout(data)


@pytest.fixture(params=available_models())
def model_name(request: pytest.FixtureRequest) -> str:
    """Every registered model, one test each."""
    return request.param


@pytest.fixture
def model_params(model_name: str) -> dict[str, Any]:
    """Fast parameters for ``model_name`` (its defaults when not listed)."""
    return dict(FAST_PARAMS.get(model_name, {}))
