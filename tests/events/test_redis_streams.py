"""Redis Streams: consumer groups share the work, dead consumers' entries are claimed,
processing twice changes nothing, trimming bounds the stream, racing relays neither
lose nor duplicate."""

from __future__ import annotations

import threading
import time

import pytest

from reco.config import EventsConfig
from reco.events import RedisConsumer, RedisStreamsBus, Relay, StreamProcessor
from reco.features import RedisOnlineFeatures
from reco.store.events import append_events

pytestmark = pytest.mark.redis

ITEMS = [f"i{k}" for k in range(13)]


@pytest.fixture()
def bus(redis_client, prefix) -> RedisStreamsBus:
    return RedisStreamsBus(
        redis_client, stream=prefix + "stream", group="processors", claim_idle_ms=200
    )


@pytest.fixture()
def features(redis_client, prefix) -> RedisOnlineFeatures:
    return RedisOnlineFeatures(redis_client, prefix=prefix + "f:")


def consumer(bus, features, name: str, batch: int = 50) -> RedisConsumer:
    processor = StreamProcessor(features, EventsConfig())
    return RedisConsumer(bus, processor, name=name, batch_size=batch, block_ms=20)


def assert_counted_once(features, total: int) -> None:
    assert features.events_applied() == total
    assert int(features.item_counts(ITEMS).sum()) == total


def test_two_processors_share_one_group(sqlite_store, bus, features, events_factory):
    append_events(sqlite_store, events_factory(1_000))
    relay = Relay(sqlite_store, bus, batch_size=200)
    first, second = consumer(bus, features, "first"), consumer(bus, features, "second")
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while features.events_applied() < 1_000 and time.monotonic() < deadline:
            relay.run_once()
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert_counted_once(features, 1_000)
    assert first.processor.applied > 0 and second.processor.applied > 0
    assert first.processor.applied + second.processor.applied == 1_000
    assert bus.backlog() == 0


def test_a_dead_consumers_pending_entries_are_claimed(
    sqlite_store, bus, features, events_factory, pump
):
    append_events(sqlite_store, events_factory(300))
    relay = Relay(sqlite_store, bus)
    relay.run_once()
    bus.ensure_group()
    doomed = bus.read("doomed", 120)  # delivered to a consumer that then dies
    assert len(doomed) == 120
    survivor = consumer(bus, features, "survivor", batch=500)
    pump(relay, survivor)
    assert features.events_applied() == 180  # its entries are not idle long enough yet
    time.sleep(0.25)
    survivor._next_claim = 0.0  # claim now rather than at its next scheduled check
    pump(relay, survivor)
    assert_counted_once(features, 300)
    assert bus.backlog() == 0
    assert bus.processed_through() == 300
    # The "dead" consumer was only slow: its late attempt changes nothing.
    assert survivor.processor.process(doomed, ack=survivor.ack) == 0
    assert_counted_once(features, 300)


def test_processing_twice_changes_nothing(sqlite_store, bus, features, events_factory, pump):
    append_events(sqlite_store, events_factory(200))
    relay = Relay(sqlite_store, bus)
    relay.run_once()
    bus.ensure_group()
    events = bus.read("c", 200)
    worker = consumer(bus, features, "c")
    # Far-apart ids (checked one by one), then a batch half of which is done already.
    assert worker.processor.process([events[0], events[-1]], ack=worker.ack) == 2
    assert worker.processor.process(events[:100], ack=worker.ack) == 99
    assert worker.processor.process(events + events[:3], ack=worker.ack) == 99
    assert worker.processor.process(events, ack=worker.ack) == 0
    assert worker.processor.process(events[::-1][:50], ack=worker.ack) == 0
    # Republishing the same stored events adds nothing to the stream either.
    assert bus.publish(events) == 0
    pump(relay, worker)
    assert_counted_once(features, 200)
    for user in ("u0", "u1"):
        assert len(features.recent_history([user])[0]) == len([e for e in events if e.user == user])


def test_trimming_bounds_the_stream_and_loses_nothing(
    sqlite_store, redis_client, prefix, features, events_factory
):
    bus = RedisStreamsBus(redis_client, stream=prefix + "short", group="g", max_length=100)
    append_events(sqlite_store, events_factory(1_000))
    relay = Relay(sqlite_store, bus, batch_size=60)
    # Nothing processed yet: the relay stops at the bound, the rest waits in the store.
    assert [relay.run_once() for _ in range(3)] == [60, 40, 0]
    worker = consumer(bus, features, "w", batch=30)
    longest = 0
    for _ in range(500):
        relay.run_once()
        longest = max(longest, redis_client.xlen(bus.stream))
        if not worker.run_once(block=False) and features.events_applied() == 1_000:
            break
    assert longest <= 100
    assert_counted_once(features, 1_000)
    relay.run_once()  # trims what is processed
    info = redis_client.xinfo_stream(bus.stream)
    assert info["entries-added"] == 1_000
    assert info["length"] <= 100


def test_racing_relays_neither_lose_nor_duplicate(
    sqlite_store, bus, features, events_factory, pump
):
    stop = threading.Event()
    relays = [Relay(sqlite_store, bus, batch_size=37) for _ in range(3)]
    threads = [
        threading.Thread(
            target=r.run, args=(stop, threading.Event()), kwargs={"poll_seconds": 0.002}
        )
        for r in relays
    ]
    for thread in threads:
        thread.start()
    try:
        for start in range(0, 1_500, 100):
            append_events(sqlite_store, events_factory(100, start=start))
        deadline = time.monotonic() + 20
        while bus.position() != 1_500 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    entries = bus.client.xrange(bus.stream)
    assert [int(entry_id.split("-")[0]) for entry_id, _ in entries] == list(range(1, 1_501))
    assert sum(r.published for r in relays) == 1_500
    pump(None, consumer(bus, features, "c", batch=500))
    assert_counted_once(features, 1_500)
