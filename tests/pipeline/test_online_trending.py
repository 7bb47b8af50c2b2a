"""The online hook of the pipeline: row-independent sources re-scored per call.

The service replaces trending's scores with ``np.log`` of the online decayed counts as
of now; these tests check that the replacement reaches every route, that the fitted
pipeline is untouched, and that the online counts reproduce the trained scores.
"""

from __future__ import annotations

import numpy as np
import pytest

from reco.data.dataset import Dataset
from reco.features import EventUpdate, MemoryOnlineFeatures
from reco.pipeline.history import Histories
from reco.training.fit import PipelineFit


def _boosted(fitted: PipelineFit, item: int) -> np.ndarray:
    """Trending scores where ``item`` leads everything by far."""
    vector = fitted.pipeline.sources["trending"].item_scores_.copy()
    vector[item] = vector.max() + 50.0
    return vector


def _least_trending(fitted: PipelineFit) -> int:
    return int(np.argmin(fitted.pipeline.sources["trending"].item_scores_))


def test_replaced_trending_leads_the_trending_source(fitted: PipelineFit, everyone: Histories):
    pipeline = fitted.pipeline
    item = _least_trending(fitted)
    online = pipeline.with_global_scores({"trending": _boosted(fitted, item)})
    rows = everyone.take(np.arange(5))
    blocked = np.zeros((5, len(pipeline.items)), dtype=bool)
    top, _ = online.generator.source_top("trending", rows, [{}] * 5, blocked, 3)
    assert (top[:, 0] == item).all()
    before, _ = pipeline.generator.source_top("trending", rows, [{}] * 5, blocked, 3)
    assert (before[:, 0] != item).all(), "the fitted pipeline must not change"
    assert (
        pipeline.sources["trending"].item_scores_[item]
        < online.sources["trending"].item_scores_[item]
    )


def test_replaced_trending_reaches_cold_answers(fitted: PipelineFit):
    pipeline = fitted.pipeline
    if not pipeline.config.cold_trending_weight:
        pytest.skip("the default pipeline blends no trending into cold answers")
    item = _least_trending(fitted)
    cold = Histories.empty(1, len(pipeline.items), users=np.array([-1]))
    plain = pipeline.recommend(cold, 10)
    online = pipeline.with_global_scores({"trending": _boosted(fitted, item)}).recommend(cold, 10)
    assert item not in plain.items[0]
    assert item in online.items[0]


def test_minus_infinity_is_never_proposed(fitted: PipelineFit, everyone: Histories):
    pipeline = fitted.pipeline
    vector = np.full(len(pipeline.items), -np.inf, dtype=np.float32)
    vector[[3, 7]] = [1.0, 2.0]
    online = pipeline.with_global_scores({"trending": vector})
    rows = everyone.take(np.arange(2))
    blocked = np.zeros((2, len(pipeline.items)), dtype=bool)
    top, scores = online.generator.source_top("trending", rows, [{}] * 2, blocked, 5)
    assert top[:, :2].tolist() == [[7, 3], [7, 3]]
    assert (top[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    # The full answer still has n items (the other sources and the fallback fill).
    result = online.recommend(rows, 10)
    assert (result.items >= 0).all()


def test_online_decayed_counts_reproduce_the_trained_scores(fitted: PipelineFit, shop: Dataset):
    model = fitted.pipeline.sources["trending"]
    features = MemoryOnlineFeatures(half_life_days=model.half_life_days)
    order = np.argsort(shop.timestamps, kind="stable")
    features.apply(
        [
            EventUpdate(
                event_id=k + 1,
                user=str(shop.users.ids[shop.user_idx[row]]),
                item=str(shop.items.ids[shop.item_idx[row]]),
                event_type="view",
                timestamp=float(shop.timestamps[row]),
                weight=1.0,
            )
            for k, row in enumerate(order)
        ]
    )
    now = float(shop.timestamps.max())
    with np.errstate(divide="ignore"):
        online = np.log(features.trending_scores(list(fitted.pipeline.items.ids), now=now))
    seen = np.isfinite(online)
    assert seen.sum() > 0.9 * len(online)
    np.testing.assert_allclose(online[seen], model.item_scores_[seen], rtol=1e-4, atol=1e-3)


def test_bad_overrides_say_what_is_wrong(fitted: PipelineFit):
    pipeline = fitted.pipeline
    with pytest.raises(ValueError, match="not a row-independent source"):
        pipeline.with_global_scores({"itemknn": np.zeros(len(pipeline.items))})
    with pytest.raises(ValueError, match="one value per item"):
        pipeline.with_global_scores({"trending": np.zeros(3)})
