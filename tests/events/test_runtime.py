"""EventsRuntime: the whole path from append_events to the online features, embedded
(in-process bus, memory features) and with Redis Streams (relay and processor apart)."""

from __future__ import annotations

import time

import pytest

from reco.config import EventsConfig, Settings
from reco.errors import ConfigurationError
from reco.events import EventsRuntime, context_segments, segment_label
from reco.features import MemoryOnlineFeatures, RedisOnlineFeatures
from reco.store.entities import put_user
from reco.store.events import append_events, watermark


def test_embedded_path_applies_events_and_calls_the_hook(sqlite_store, tmp_path):
    put_user(sqlite_store, "ann", {"device": "mobile", "country": "DE", "age": 31})
    append_events(sqlite_store, [{"user_id": "ann", "item_id": "old", "event_type": "view"}])
    invalidated: list[str] = []
    runtime = EventsRuntime.from_settings(
        Settings(home=tmp_path), sqlite_store, on_users=invalidated.extend
    )
    assert isinstance(runtime.features, MemoryOnlineFeatures)
    runtime.start()
    try:
        # Events stored before the process started are replayed (the features rebuild).
        assert runtime.wait_processed(watermark(sqlite_store), timeout=10)
        append_events(
            sqlite_store,
            [
                {"user_id": "ann", "item_id": "a", "event_type": "purchase"},
                {"user_id": "ann", "item_id": "b", "event_type": "dislike"},
                {"user_id": "bob", "item_id": "a", "event_type": "rating", "value": 3},
            ],
        )
        runtime.notify()
        assert runtime.wait_processed(watermark(sqlite_store), timeout=10)
        features = runtime.features
        [ann, bob] = features.recent_history(["ann", "bob"])
        assert [(h.item, h.event_type, h.weight) for h in ann] == [
            ("old", "view", 1.0),
            ("a", "purchase", 8.0),
            ("b", "dislike", -1.0),
        ]
        assert [(h.item, h.weight) for h in bob] == [("a", 3.0)]
        assert features.dislikes("ann") == {"b"}
        assert features.segment_counts("device=mobile") == {"old": 1, "a": 1}
        assert features.segment_counts("country=DE") == {"old": 1, "a": 1}
        assert features.top_trending(1)[0][0] == "a"
        deadline = time.monotonic() + 5  # the hook runs right after each batch
        while not {"ann", "bob"} <= set(invalidated) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(invalidated) == {"ann", "bob"}
        status = runtime.status()
        assert (status.bus, status.published, status.applied) == ("memory", 4, 4)
    finally:
        runtime.stop()


@pytest.mark.redis
def test_redis_path_with_relay_and_processor_in_different_runtimes(sqlite_store, redis_settings):
    settings = redis_settings(claim_idle_ms=1_000)
    service = EventsRuntime.from_settings(settings, sqlite_store)  # relays, does not process
    assert service.processor is None and service.relay is not None
    invalidated: list[str] = []
    worker = EventsRuntime.from_settings(
        settings, sqlite_store, relay=False, process=True, on_users=invalidated.extend
    )
    assert isinstance(worker.features, RedisOnlineFeatures)
    service.start()
    worker.start()
    try:
        append_events(
            sqlite_store,
            [{"user_id": f"u{k}", "item_id": "x", "event_type": "click"} for k in range(50)],
        )
        service.notify()
        assert service.wait_processed(watermark(sqlite_store), timeout=10)
        assert service.features.events_applied() == 50
        assert service.features.item_counts(["x"]).tolist() == [50]
        # The hook runs right after each batch is applied.
        deadline = time.monotonic() + 5
        while len(invalidated) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(invalidated) == sorted(f"u{k}" for k in range(50))
        assert service.status().processed_through == 50
    finally:
        worker.stop()
        service.stop()


def test_the_in_process_bus_needs_relay_and_processor_together(sqlite_store, tmp_path):
    with pytest.raises(ConfigurationError, match="same process"):
        EventsRuntime.from_settings(Settings(home=tmp_path), sqlite_store, process=False)


def test_the_redis_bus_needs_a_url(sqlite_store, tmp_path):
    settings = Settings(home=tmp_path, events=EventsConfig(bus="redis"))
    with pytest.raises(ConfigurationError, match="RECO_REDIS_URL"):
        EventsRuntime.from_settings(settings, sqlite_store)


def test_segment_labels():
    assert segment_label("device", " mobile ") == "device=mobile"
    assert segment_label("age", 31.0) == "age=31"
    assert segment_label("vip", True) == "vip=true"
    assert segment_label("tags", ["a"]) is None
    assert segment_label("country", "") is None
    assert context_segments(
        {"device": "tv", "country": "FR", "x": 1}, ["device", "country", "os"]
    ) == [
        "device=tv",
        "country=FR",
    ]
