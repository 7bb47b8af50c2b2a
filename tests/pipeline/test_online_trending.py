"""The online hook of the pipeline: row-independent sources re-scored per call.

The service replaces trending's scores with ``np.log`` of the online decayed counts as
of now; these tests check that the replacement reaches every route, that the fitted
pipeline is untouched, and that the online counts reproduce the trained scores.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from reco.config import EventsConfig
from reco.data.dataset import Dataset
from reco.features import EventUpdate, MemoryOnlineFeatures
from reco.pipeline.history import Histories
from reco.service.online import OnlineView
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


class _SlowTrending(MemoryOnlineFeatures):
    """Real memory features whose trending read waits until released, and counts."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.release = threading.Event()

    def trending_scores(self, items, *, now=None):
        self.reads += 1
        assert self.release.wait(10), "the test never released the read"
        return super().trending_scores(items, now=now)


def test_one_request_refreshes_trending_while_the_others_keep_the_last_view(
    fitted: PipelineFit,
):
    pipeline = fitted.pipeline
    features = _SlowTrending()
    item = str(pipeline.items.ids[0])
    features.apply([EventUpdate(1, "ann", item, "view", time.time(), 1.0)])
    # The view reads only the runtime's features.
    view = OnlineView(EventsConfig(), SimpleNamespace(features=features))
    view.trending_refresh_seconds = 0.0  # every call finds the last view expired
    features.release.set()
    first = view.pipeline(pipeline)
    assert first is not pipeline and features.reads == 1

    features.release.clear()
    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(view.pipeline, pipeline)
        deadline = time.monotonic() + 10
        while features.reads < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert features.reads == 2
        # While that refresh runs, other callers get the last view at once.
        assert all(view.pipeline(pipeline) is first for _ in range(5))
        assert features.reads == 2
        features.release.set()
        second = refreshing.result(timeout=10)
    assert second is not first and second is not pipeline
    # The next expired call refreshes again.
    assert view.pipeline(pipeline) is not second and features.reads == 3


def test_a_failed_trending_refresh_lets_the_next_call_try_again(fitted: PipelineFit):
    pipeline = fitted.pipeline
    features = MemoryOnlineFeatures()
    features.apply([EventUpdate(1, "ann", str(pipeline.items.ids[0]), "view", time.time(), 1.0)])
    view = OnlineView(EventsConfig(), SimpleNamespace(features=features))
    view.trending_refresh_seconds = 0.0

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # not an Exception: escapes the outage handling

    features.trending_scores = broken
    with pytest.raises(KeyboardInterrupt):
        view.pipeline(pipeline)
    del features.trending_scores  # the real method again
    assert view.pipeline(pipeline) is not pipeline
