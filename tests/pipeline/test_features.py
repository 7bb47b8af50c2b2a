"""Features: causal item statistics, category affinity, time of request, names."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reco.data.dataset import Dataset
from reco.pipeline.catalog import Catalog
from reco.pipeline.features import (
    ItemClock,
    affinity_features,
    feature_names,
    item_features,
    time_features,
)
from reco.pipeline.history import Histories

DAY = 86_400


def small_data(with_times: bool = True) -> Dataset:
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u1", "u2"],
            "item_id": ["a", "a", "a", "b", "c"],
            "timestamp": [0, 10 * DAY, 20 * DAY, 5 * DAY, 30 * DAY],
        }
    )
    if not with_times:
        interactions = interactions.drop(columns="timestamp")
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "categories": ["x|y", "y", None, "x"],
            "title": list("ABCD"),
        }
    )
    return Dataset.from_frames(interactions, items)


def test_item_counts_only_look_back_from_the_request():
    data = small_data()
    clock = ItemClock(Catalog.from_dataset(data))
    a = data.items.index_of("a")
    items = np.array([a, a, a, a, a])
    times = np.array([-1.0, 10 * DAY, 15 * DAY, 18 * DAY, np.nan])
    features = item_features(clock, items, times, [7.0])
    assert features["item_count"].tolist() == [0, 2, 2, 2, 3]
    # Interactions of a: days 0, 10, 20; a 7-day window ending on day 15 holds day 10.
    assert features["item_count_7d"][1:4].tolist() == [1, 1, 0]
    assert np.isnan(features["item_age_days"][0])  # nothing yet at that time
    assert features["item_age_days"][2] == 15 and features["item_idle_days"][2] == 5
    assert np.isnan(features["item_count_7d"][4])


def test_without_timestamps_counts_are_all_time_and_times_unknown():
    data = small_data(with_times=False)
    clock = ItemClock(Catalog.from_dataset(data))
    a = data.items.index_of("a")
    features = item_features(clock, np.array([a]), np.array([np.nan]), [7.0])
    assert features["item_count"].tolist() == [3]
    assert np.isnan(features["item_age_days"][0]) and np.isnan(features["item_count_7d"][0])


def test_category_affinity_is_the_history_share_in_the_item_categories():
    data = small_data()
    catalog = Catalog.from_dataset(data)
    idx = {name: data.items.index_of(name) for name in "abcd"}
    # One user who had a (x, y) and b (y): share of x is 1/2, of y 2/2.
    history = Histories.from_events(1, data.n_items, [0, 0], [idx["a"], idx["b"]])
    items = np.array([idx["d"], idx["a"], idx["c"]])
    out = affinity_features(catalog, history, np.zeros(3, dtype=np.int64), items)
    assert out["category_affinity_mean"][0] == 0.5 and out["category_affinity_max"][0] == 0.5
    assert out["category_affinity_mean"][1] == 0.75 and out["category_affinity_max"][1] == 1.0
    assert np.isnan(out["category_affinity_mean"][2])  # item c has no category


def test_request_hour_and_weekday_in_utc():
    # 2024-01-01 was a Monday; 13:30 UTC.
    t = pd.Timestamp("2024-01-01 13:30", tz="UTC").timestamp()
    out = time_features(np.array([t, np.nan]), np.array([0, 1]))
    assert out["request_hour"][0] == 13 and out["request_weekday"][0] == 0
    assert np.isnan(out["request_hour"][1])


def test_feature_names_cover_every_group():
    names = feature_names(["ease", "itemknn"], ["itemknn"], [1, 10], [7.0])
    assert names[:3] == ["ease_score", "ease_rank", "ease_gap"]
    assert "itemknn_last10_gap" in names and "item_count_7d" in names
    assert {"user_history", "category_affinity_mean", "request_hour", "n_sources"} <= set(names)
    assert len(names) == len(set(names))
