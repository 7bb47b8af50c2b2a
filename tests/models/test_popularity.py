"""PopularityRecommender: all-time counts, the recent window, and its edge cases."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.popularity import PopularityRecommender

DAY = 86_400
NOW = 1_700_000_000


def shifting_tastes() -> pd.DataFrame:
    """'old' was the hit 100 days ago, 'new' is the hit of the last week.

    all-time: old 6, new 4, mid 3, rare 1; last 10 days: new 4, mid 1, others 0.
    """
    rows = [(f"a{u}", "old", NOW - 100 * DAY + u) for u in range(6)]
    rows += [(f"b{u}", "new", NOW - 7 * DAY + u) for u in range(4)]
    rows += [(f"c{u}", "mid", NOW - 50 * DAY) for u in range(2)]
    rows += [("c9", "mid", NOW - 2 * DAY), ("d0", "rare", NOW - 60 * DAY)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def ranking(model: PopularityRecommender, data: Dataset) -> list[str]:
    """The model's full ranking for an empty history, as external ids."""
    empty = csr_matrix((1, data.n_items), dtype=np.float32)
    items, _ = model.recommend(empty, data.n_items)
    return data.items.to_external(items[0]).tolist()


def test_all_time_ranks_by_interaction_count() -> None:
    data = Dataset.from_frames(shifting_tastes())
    model = PopularityRecommender().fit(data)
    assert ranking(model, data) == ["old", "new", "mid", "rare"]
    np.testing.assert_array_equal(model.item_scores_, data.item_counts().astype(np.float32))


def test_window_ranks_by_recent_counts_and_breaks_ties_by_all_time() -> None:
    data = Dataset.from_frames(shifting_tastes())
    model = PopularityRecommender(window_days=10).fit(data)
    # new (4 recent) > mid (1 recent) > old, rare (0 recent; old has more all-time)
    assert ranking(model, data) == ["new", "mid", "old", "rare"]


def test_window_is_measured_from_the_newest_training_event() -> None:
    data = Dataset.from_frames(shifting_tastes())
    # 101 days back from the newest event reaches the 'old' burst too: all-time order.
    wide = PopularityRecommender(window_days=101).fit(data)
    assert ranking(wide, data) == ["old", "new", "mid", "rare"]


def test_every_row_gets_the_same_scores_and_the_fallback_is_the_window_ranking() -> None:
    data = Dataset.from_frames(shifting_tastes())
    model = PopularityRecommender(window_days=10).fit(data)
    rows = data.matrix()[:5]
    scores = model.score(rows, np.arange(data.n_items))
    np.testing.assert_array_equal(scores, np.tile(model.item_scores_, (5, 1)))
    np.testing.assert_array_equal(model.popularity_, model.item_scores_)


def test_window_without_timestamps_falls_back_to_all_time_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = shifting_tastes().drop(columns=["timestamp"])
    data = Dataset.from_frames(frame)
    with caplog.at_level(logging.WARNING, logger="reco.models.popularity"):
        model = PopularityRecommender(window_days=10).fit(data)
    assert ranking(model, data) == ["old", "new", "mid", "rare"]
    assert "window_days=10 ignored" in caplog.text
    assert "timestamps" in caplog.text


@pytest.mark.parametrize("window", [0, -3.5])
def test_a_window_that_is_not_positive_is_refused(window: float) -> None:
    data = Dataset.from_frames(shifting_tastes())
    with pytest.raises(ConfigurationError, match="window_days must be a positive"):
        PopularityRecommender(window_days=window).fit(data)
