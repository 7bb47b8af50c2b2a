"""Online features: memory and Redis agree, apply is idempotent, trending decays as the
trending model does, histories are bounded, dislikes are kept."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.features import (
    EventUpdate,
    HistoryEntry,
    MemoryOnlineFeatures,
    OnlineFeatures,
    RedisOnlineFeatures,
    history_frame,
)
from reco.models.context_popularity import TrendingRecommender

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0


def random_updates(count: int, seed: int = 0) -> list[EventUpdate]:
    rng = random.Random(seed)
    weights = {"view": 1.0, "click": 2.0, "purchase": 8.0, "dislike": -1.0, "rating": 0.0}
    out = []
    for event_id in range(1, count + 1):
        kind = rng.choice(list(weights))
        weight = float(rng.randint(0, 5)) if kind == "rating" else weights[kind]
        out.append(
            EventUpdate(
                event_id=event_id,
                user=f"u{rng.randint(0, 9)}",
                item=f"item {rng.randint(0, 29)} é",  # spaces and non-ASCII survive
                event_type=kind,
                timestamp=T0 + rng.uniform(0, 30 * 86_400),
                weight=weight,
                segments=tuple(rng.sample(["device=mobile", "country=DE", "os=ios"], 2)),
            )
        )
    return out


@pytest.fixture(params=["memory", "redis"])
def features(request, redis_client, prefix) -> OnlineFeatures:
    if request.param == "memory":
        return MemoryOnlineFeatures(history_length=5, half_life_days=2.0)
    return RedisOnlineFeatures(redis_client, prefix=prefix, history_length=5, half_life_days=2.0)


def test_both_backends_follow_the_protocol(features):
    assert isinstance(features, OnlineFeatures)


def test_memory_and_redis_agree_on_the_same_events(redis_client, prefix):
    updates = random_updates(600, seed=3)
    memory = MemoryOnlineFeatures(history_length=8, half_life_days=3.0)
    shared = RedisOnlineFeatures(redis_client, prefix=prefix, history_length=8, half_life_days=3.0)
    # Different batch sizes: batching must not change the result.
    for start in range(0, len(updates), 50):
        memory.apply(updates[start : start + 50])
    for start in range(0, len(updates), 170):
        shared.apply(updates[start : start + 170])

    users = [f"u{k}" for k in range(10)] + ["nobody"]
    items = [*sorted({u.item for u in updates}), "never seen"]
    assert memory.recent_history(users) == shared.recent_history(users)
    now = T0 + 31 * 86_400
    # The same float operations in Python and Lua: equal to the last bit.
    assert np.array_equal(
        memory.trending_scores(items, now=now), shared.trending_scores(items, now=now)
    )
    assert memory.top_trending(7, now=now) == shared.top_trending(7, now=now)
    assert np.array_equal(memory.item_counts(items), shared.item_counts(items))
    for segment in ("device=mobile", "country=DE", "os=ios", "os=android"):
        assert memory.segment_counts(segment) == shared.segment_counts(segment)
    for user in users:
        assert memory.dislikes(user) == shared.dislikes(user)
    assert memory.events_applied() == shared.events_applied() == 600


def test_applying_twice_changes_nothing(features):
    updates = random_updates(200, seed=5)
    assert features.apply(updates[:120]) == 120
    assert features.apply(updates) == 80  # the first 120 are skipped
    assert features.apply(updates) == 0
    assert features.apply(list(reversed(updates[:10]))) == 0
    items = sorted({u.item for u in updates})
    assert features.events_applied() == 200
    assert int(features.item_counts(items).sum()) == 200


def test_history_is_bounded_oldest_first_with_types_and_weights(features):
    updates = [EventUpdate(k, "u", f"i{k}", "click", T0 + k, 2.0, ()) for k in range(1, 9)]
    features.apply(updates)
    [history] = features.recent_history(["u"])
    assert [h.item for h in history] == ["i4", "i5", "i6", "i7", "i8"]
    assert history[-1] == HistoryEntry(8, "i8", T0 + 8, "click", 2.0)
    assert features.recent_history(["stranger"]) == [[]]


def test_dislikes_are_recorded_and_do_not_trend(features):
    features.apply(
        [
            EventUpdate(1, "ann", "bad", "dislike", T0, -1.0, ("country=DE",)),
            EventUpdate(2, "ann", "good", "like", T0, 4.0, ("country=DE",)),
            EventUpdate(3, "bob", "bad", "view", T0, 1.0, ()),
        ]
    )
    assert features.dislikes("ann") == {"bad"}
    assert features.dislikes("bob") == set()
    assert features.segment_counts("country=DE") == {"good": 1}
    assert list(features.item_counts(["bad", "good"])) == [2, 1]
    # One positive event each: equal trending, the dislike did not count.
    scores = features.trending_scores(["bad", "good"], now=T0)
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(1.0)


def test_trending_decays_like_the_trending_model(features):
    rng = np.random.default_rng(0)
    stamps = T0 + rng.uniform(0, 20 * 86_400, size=400).round()
    items = rng.integers(0, 25, size=400)
    features.apply(
        [
            EventUpdate(k + 1, "u", f"i{item}", "view", float(stamp), 1.0, ())
            for k, (item, stamp) in enumerate(zip(items, stamps, strict=True))
        ]
    )
    frame = pd.DataFrame({"user_id": "u", "item_id": [f"i{i}" for i in items], "timestamp": stamps})
    dataset = Dataset.from_frames(frame)
    model = TrendingRecommender(half_life_days=2.0).fit(dataset)
    # The model's counts are as of its newest event: ask the online ones at that time.
    online = features.trending_scores(list(dataset.items.ids), now=float(stamps.max()))
    np.testing.assert_allclose(online, model.decayed_counts_, rtol=1e-9)


def test_history_frame_keeps_events_after_the_watermark():
    features = MemoryOnlineFeatures()
    features.apply(
        [
            EventUpdate(1, "a", "x", "view", T0, 1.0),
            EventUpdate(2, "b", "y", "purchase", T0 + 1, 8.0),
            EventUpdate(3, "a", "z", "click", T0 + 2, 2.0),
        ]
    )
    users = ["a", "b"]
    frame = history_frame(users, features.recent_history(users), after_id=1)
    assert frame["user_id"].tolist() == ["b", "a"]
    assert frame["item_id"].tolist() == ["y", "z"]
    assert frame["value"].tolist() == [8.0, 2.0]
    assert frame["timestamp"].tolist() == [int(T0) + 1, int(T0) + 2]
    assert list(frame.columns) == [
        "user_id",
        "item_id",
        "timestamp",
        "value",
        "event_type",
        "event_id",
    ]
    assert history_frame(users, features.recent_history(users), after_id=3).empty


def test_clear_forgets_everything(features):
    features.apply(random_updates(20))
    features.clear()
    assert features.events_applied() == 0
    assert features.top_trending(5) == []
    assert features.apply(random_updates(20)) == 20
