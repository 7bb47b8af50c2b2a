"""The synthetic generator: canonical frames, determinism, and the structure it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.synthetic import CATEGORIES, DEVICES, EVENT_TYPES, OPERATING_SYSTEMS, generate
from reco.errors import ConfigurationError

START = 1704067200  # 2024-01-01T00:00:00Z
DAY = 86_400


@pytest.fixture(scope="module")
def frames():
    return generate(3000, 1500, 120_000, seed=3)


def test_frames_are_canonical(frames):
    interactions = frames.interactions
    assert len(interactions) == 120_000
    assert list(interactions.columns) == list(schema.INTERACTION_COLUMNS)
    pd.testing.assert_frame_equal(schema.normalize_interactions(interactions), interactions)
    assert interactions[schema.TIMESTAMP].notna().all()
    assert interactions[schema.TIMESTAMP].is_monotonic_increasing
    assert interactions[schema.EVENT_ID].isna().all()
    assert set(interactions[schema.USER]) <= set(frames.users[schema.USER])
    assert set(interactions[schema.ITEM]) <= set(frames.items[schema.ITEM])
    assert frames.users[schema.USER].is_unique and len(frames.users) == 3000
    assert frames.items[schema.ITEM].is_unique and len(frames.items) == 1500


def test_same_seed_same_data_other_seed_other_data():
    a, b = generate(300, 200, 5000, seed=11), generate(300, 200, 5000, seed=11)
    for left, right in ((a.interactions, b.interactions), (a.items, b.items), (a.users, b.users)):
        pd.testing.assert_frame_equal(left, right)
    c = generate(300, 200, 5000, seed=12)
    assert not a.interactions[schema.ITEM].equals(c.interactions[schema.ITEM])


def test_metadata(frames):
    items, users = frames.items, frames.users
    primary = items["categories"].str.split("|").str[0]
    assert set(primary) <= set(CATEGORIES)
    assert items["categories"].str.contains("|", regex=False).mean() == pytest.approx(0.2, abs=0.05)
    # Titles and texts use words of their category, so content models have signal.
    assert all(c in t for c, t in zip(primary, items["text"], strict=True))
    assert items["title"].str.len().min() > 5 and (items["price"] > 0).all()
    assert set(users["device"]) == set(DEVICES)
    for device, (systems, _) in OPERATING_SYSTEMS.items():
        assert set(users.loc[users["device"] == device, "os"]) <= set(systems)
    assert users["country"].nunique() >= 8 and users["age_band"].nunique() == 5


def test_time_window_and_items_only_after_creation(frames):
    joined = frames.interactions.merge(frames.items, on=schema.ITEM)
    stamps = joined[schema.TIMESTAMP].astype("int64")
    assert stamps.min() >= START and stamps.max() < START + 180 * DAY
    assert (stamps >= joined["created_at"].astype("int64")).all()
    new_items = frames.items[frames.items["created_at"] >= START]
    assert 0.2 < len(new_items) / len(frames.items) < 0.4
    assert joined.loc[joined["created_at"] >= START, schema.ITEM].nunique() > 0.5 * len(new_items)


def test_long_tail(frames):
    counts = frames.interactions[schema.ITEM].value_counts().to_numpy()
    top_decile = counts[: len(frames.items) // 10].sum() / counts.sum()
    assert top_decile > 0.4


def test_popularity_drifts(frames):
    stamps = frames.interactions[schema.TIMESTAMP].astype("int64")
    items = frames.interactions[schema.ITEM]
    first = items[stamps < START + 30 * DAY].value_counts()
    last = items[stamps >= START + 150 * DAY].value_counts()
    both = pd.concat([first, last], axis=1).fillna(0)
    assert both.corr(method="spearman").iloc[0, 1] < 0.8


def test_sessions_and_event_mix(frames):
    ordered = frames.interactions.sort_values([schema.USER, schema.TIMESTAMP], kind="stable")
    gaps = ordered.groupby(schema.USER)[schema.TIMESTAMP].diff().dropna().astype("int64")
    assert gaps.median() < 300  # bursts seconds to minutes apart
    assert (gaps > DAY).mean() > 0.05  # and separate sessions days apart
    shares = frames.interactions[schema.EVENT_TYPE].value_counts(normalize=True)
    assert set(shares.index) == set(EVENT_TYPES)
    assert shares["view"] > shares["click"] > shares["purchase"] > 0.03


def test_segments_shift_category_preferences(frames):
    joined = frames.interactions.merge(frames.items, on=schema.ITEM).merge(
        frames.users, on=schema.USER
    )
    category = joined["categories"].str.split("|").str[0]
    shares = pd.crosstab(joined["device"], category, normalize="index")
    distance = 0.5 * (shares.loc["mobile"] - shares.loc["desktop"]).abs().sum()
    assert distance > 0.05


def _recall_at_10(scores: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    scores = np.where(train > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = np.take_along_axis(test, top, axis=1).sum(axis=1)
    relevant = np.minimum(test.sum(axis=1), 10)
    keep = relevant > 0
    return float((hits[keep] / relevant[keep]).mean())


def test_item_item_cosine_beats_popularity():
    """Collaborative signal exists: neighbours from history beat the most popular items."""
    n_users, n_items = 2000, 1000
    data = generate(n_users, n_items, 60_000, seed=5).interactions
    users = data[schema.USER].str[1:].astype(int).to_numpy()
    items = data[schema.ITEM].str[1:].astype(int).to_numpy()
    pairs = np.unique(users * n_items + items)
    users, items = pairs // n_items, pairs % n_items
    held_out = np.random.default_rng(0).random(len(pairs)) < 0.2

    def matrix(mask: np.ndarray) -> np.ndarray:
        values = np.ones(int(mask.sum()))
        shape = (n_users, n_items)
        return csr_matrix((values, (users[mask], items[mask])), shape=shape).toarray()

    train, test = matrix(~held_out), matrix(held_out)
    normalised = train / (np.sqrt(train.sum(axis=0)) + 1e-9)
    similarity = normalised.T @ normalised
    np.fill_diagonal(similarity, 0.0)
    cosine = _recall_at_10(train @ similarity, train, test)
    popularity = _recall_at_10(np.tile(train.sum(axis=0), (n_users, 1)), train, test)
    assert cosine > 1.5 * popularity
    assert popularity > 0.02  # and popularity is a real baseline, not noise


def test_no_interactions_and_tiny_catalogues():
    empty = generate(3, 4, 0)
    assert len(empty.interactions) == 0 and list(empty.interactions.columns) == list(
        schema.INTERACTION_COLUMNS
    )
    tiny = generate(2, 1, 50, days=1)
    assert set(tiny.interactions[schema.ITEM]) == {"i0"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0, "n_items": 5, "n_interactions": 5},
        {"n_users": 5, "n_items": 0, "n_interactions": 5},
        {"n_users": 5, "n_items": 5, "n_interactions": -1},
        {"n_users": 5, "n_items": 5, "n_interactions": 5, "days": 0},
        {"n_users": 5, "n_items": 5, "n_interactions": 5, "start": "yesterday-ish"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        generate(**kwargs)
