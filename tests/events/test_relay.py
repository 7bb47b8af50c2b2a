"""The relay: stored events reach the bus in id order, once, and catch up after the
bus was down or lost its data; on PostgreSQL it never passes an uncommitted lower id."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import insert

from reco.config import EventsConfig
from reco.events import (
    BusUnavailable,
    InProcessBus,
    RedisConsumer,
    RedisStreamsBus,
    Relay,
    StreamProcessor,
)
from reco.events.outbox import settled_watermark
from reco.features import RedisOnlineFeatures
from reco.store.events import append_events
from reco.store.tables import interactions


def test_relay_publishes_stored_events_in_id_order_once(store, events_factory):
    records = events_factory(25)
    append_events(store, records)
    bus = InProcessBus()
    relay = Relay(store, bus, batch_size=10)
    assert [relay.run_once() for _ in range(4)] == [10, 10, 5, 0]
    events = bus.take(100)
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 25
    assert bus.publish(events) == 0  # a second copy adds nothing
    first = events[0]
    assert (first.user, first.item, first.event_type) == ("u0", "i0", "view")
    assert first.timestamp == 1_700_000_000 and first.value == 1.0


def test_events_without_a_time_take_the_time_they_were_stored(sqlite_store):
    append_events(sqlite_store, [{"user_id": "a", "item_id": "b"}])
    with sqlite_store.begin() as connection:
        connection.execute(
            insert(interactions).values(
                dedupe_key="e:x", user_id="a", item_id="c", event_type="view", source="file"
            )
        )
    bus = InProcessBus()
    Relay(sqlite_store, bus).run_once()
    stamps = [e.timestamp for e in bus.take(10)]
    assert len(stamps) == 2 and abs(stamps[0] - stamps[1]) < 60


def test_a_full_bus_holds_the_relay_back_and_nothing_is_lost(sqlite_store, events_factory):
    append_events(sqlite_store, events_factory(30))
    bus = InProcessBus(max_length=8)
    relay = Relay(sqlite_store, bus, batch_size=5)
    assert [relay.run_once() for _ in range(3)] == [5, 3, 0]
    taken = []
    while len(taken) < 30:
        taken += bus.take(4)
        relay.run_once()
    assert [e.id for e in taken] == list(range(1, 31))


def test_a_new_bus_can_rebuild_from_the_newest_events_only(sqlite_store, events_factory):
    append_events(sqlite_store, events_factory(50))
    bus = InProcessBus()
    relay = Relay(sqlite_store, bus, rebuild_max_events=10)
    relay.run_once()
    assert [e.id for e in bus.take(100)] == list(range(41, 51))


@pytest.mark.postgres
def test_the_relay_never_passes_an_uncommitted_lower_id(postgres_store, events_factory):
    engine = postgres_store
    append_events(engine, events_factory(3))
    bus = InProcessBus()
    relay = Relay(engine, bus, lock_timeout_ms=50)
    assert relay.run_once() == 3
    bus.take(10)
    slow = engine.connect()
    transaction = slow.begin()
    try:
        # This writer draws id 4 from the sequence and has not committed yet ...
        slow.execute(
            insert(interactions).values(
                dedupe_key="e:slow", user_id="u9", item_id="i9", event_type="view", source="t"
            )
        )
        # ... while another stores id 5 and commits.
        append_events(engine, events_factory(1, start=100))
        assert settled_watermark(engine, lock_timeout_ms=50) is None
        assert relay.run_once() == 0
        assert bus.position() == 3
        transaction.commit()
    finally:
        slow.close()
    assert relay.run_once() == 2
    assert [(e.id, e.user) for e in bus.take(10)] == [(4, "u9"), (5, "u2")]


def _redis_path(store, url: str):
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    bus = RedisStreamsBus(client, stream="events", group="processors")
    features = RedisOnlineFeatures(client, prefix="online:")
    processor = StreamProcessor(features, EventsConfig())
    consumer = RedisConsumer(bus, processor, name="c1")
    return client, bus, features, Relay(store, bus, batch_size=40), consumer


def _retrying(action, attempts: int = 20):
    """Run ``action``; a just-restarted server may refuse the pool's stale connection."""
    for attempt in range(attempts):
        try:
            return action()
        except (redis.ConnectionError, BusUnavailable):
            if attempt == attempts - 1:
                raise
    return None


@pytest.mark.redis
def test_relay_catches_up_after_redis_was_down(sqlite_store, redis_server, events_factory, pump):
    server = redis_server(persistent=True)
    client, bus, features, relay, consumer = _redis_path(sqlite_store, server.url)
    append_events(sqlite_store, events_factory(100))
    pump(relay, consumer)
    assert features.events_applied() == 100
    append_events(sqlite_store, events_factory(30, start=100))
    relay.run_once()
    in_flight = bus.read("c1", 25)  # delivered, not yet applied, when Redis dies
    assert len(in_flight) == 25

    server.kill()
    # The store keeps accepting while Redis is down; the relay reports and waits.
    accepted = append_events(sqlite_store, events_factory(70, start=130)).accepted
    assert accepted == 70
    with pytest.raises(BusUnavailable, match="unreachable"):
        relay.run_once()

    server.start()  # same data folder: the append-only file brings the stream back
    _retrying(lambda: consumer.processor.process(in_flight, ack=consumer.ack))
    _retrying(lambda: pump(relay, consumer))
    assert features.events_applied() == 200
    items = [f"i{k}" for k in range(13)]
    assert int(features.item_counts(items).sum()) == 200
    assert client.xinfo_stream("events")["entries-added"] == 200  # each published once


@pytest.mark.redis
def test_redis_losing_its_data_rebuilds_the_features_from_the_store(
    sqlite_store, redis_server, events_factory, pump
):
    server = redis_server(persistent=False)
    _, _, features, relay, consumer = _redis_path(sqlite_store, server.url)
    append_events(sqlite_store, events_factory(120))
    pump(relay, consumer)
    assert features.events_applied() == 120

    server.kill()
    append_events(sqlite_store, events_factory(80, start=120))
    server.start()  # empty: stream, group and features are gone together

    _retrying(lambda: pump(relay, consumer))
    assert features.events_applied() == 200
    assert int(features.item_counts([f"i{k}" for k in range(13)]).sum()) == 200
