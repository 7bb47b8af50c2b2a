"""The relay (outbox pattern): publish stored events to the bus in id order.

The store is the source of truth: the API stores events (ids increasing) before it
answers 202, whatever the state of the bus. Each relay round publishes the stored
events with ids above the bus's position and at or below the store's settled
watermark (:func:`reco.events.outbox.settled_watermark`), as many as the bus has room
for. The bus's own position is the offset: Redis keeps it with the stream, atomically
with the entries (:mod:`reco.events.redis_bus`); the in-process bus keeps it with the
in-memory features it feeds. So after the bus was down the relay resumes where the bus
is, and nothing acknowledged by the API is lost. A bus with no position (new, or it
lost its data) is refilled from the store: all of it, or the newest
``rebuild_max_events``.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from reco.events.bus import EventBus
from reco.events.outbox import (
    every_visible_id_is_settled,
    latest_id,
    read_events,
    settled_watermark,
)

log = logging.getLogger(__name__)

# While events keep arriving, the pause between two relay rounds: events come in
# batches of what arrived meanwhile, and an event reaches the online features at most
# this much later (a user's answers do not wait for it; they read the store).
GATHER_SECONDS = 0.02
# An idle relay asks the bus for its position this often (seconds), and the store alone
# in between.
BUS_CHECK_SECONDS = 1.0


class Relay:
    """Moves stored events to a bus; one round at a time (:meth:`run_once`) or in a loop.

    Several relays (one per process) may run against one Redis stream: the stream
    refuses out-of-order and repeated ids, so they cannot lose or duplicate an event,
    only race for the same work.
    """

    def __init__(
        self,
        engine: Engine,
        bus: EventBus,
        *,
        batch_size: int = 1_000,
        lock_timeout_ms: int = 200,
        rebuild_max_events: int | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.batch_size = batch_size
        self.lock_timeout_ms = lock_timeout_ms
        self.rebuild_max_events = rebuild_max_events
        self.published = 0
        self._settled = every_visible_id_is_settled(engine)
        # The bus position at the last full round, and when.
        self._seen: tuple[int | None, float] = (None, 0.0)

    def run_once(self) -> int:
        """Publish the next batch of settled events; return how many were added.

        Raises BusUnavailable when the bus is down (nothing is lost: the events stay
        in the store for the next round).
        """
        if self._nothing_new():
            return 0
        room = self.bus.room()
        if room <= 0:
            return 0
        position = self.bus.position()
        self._seen = (position, time.monotonic())
        rebuilding = position is None
        if position is None:
            settled = settled_watermark(self.engine, lock_timeout_ms=self.lock_timeout_ms)
            if settled is None:
                return 0  # writers in flight on PostgreSQL: next round
            position = self._rebuild_start(settled)
        elif self._settled:
            settled = None  # every visible event is settled: read on from the position
        else:
            # Nothing new (the usual idle round): stop before the settling lock below.
            if latest_id(self.engine) <= position:
                return 0
            settled = settled_watermark(self.engine, lock_timeout_ms=self.lock_timeout_ms)
            if settled is None or settled <= position:
                return 0
        events = read_events(self.engine, position, settled, min(room, self.batch_size))
        if not events:
            return 0
        if rebuilding:
            log.info(
                "the event bus holds no events: replaying the store from id %d to rebuild "
                "the online features",
                events[0].id,
            )
        added = self.bus.publish(events)
        self.published += added
        return added

    def _nothing_new(self) -> bool:
        """True when the store holds nothing above the bus position seen in the last
        BUS_CHECK_SECONDS: the idle round then costs one store query, no round trip to
        the bus (whose position is still asked that often: Redis may lose its data)."""
        position, at = self._seen
        if position is None or time.monotonic() - at > BUS_CHECK_SECONDS:
            return False
        return latest_id(self.engine) <= position

    def _rebuild_start(self, settled: int) -> int:
        """Where a bus without history starts: the beginning, or the newest events only."""
        if self.rebuild_max_events is None:
            return 0
        return max(0, settled - self.rebuild_max_events)

    def run(
        self,
        stop: threading.Event,
        wake: threading.Event,
        *,
        poll_seconds: float = 0.05,
        gather_seconds: float = GATHER_SECONDS,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        """Relay until ``stop`` is set.

        Idle, a round runs every ``poll_seconds`` (events other processes store) or as
        soon as ``wake`` is set (after this process stored events). While events keep
        coming, a round that published some waits ``gather_seconds`` before the next,
        so that events arriving one per request travel in batches instead of one round
        (and one processor round) each; a full batch goes on at once. Failures (bus or
        store unreachable) are logged at most once a minute and retried with a growing
        pause.
        """
        backoff = poll_seconds
        last_warning = 0.0
        while not stop.is_set():
            # Cleared before the round, so a wake-up during it is not lost.
            wake.clear()
            try:
                added = self.run_once()
                backoff = poll_seconds
            except Exception as exc:  # keep relaying whatever fails; the store holds the events
                now = time.monotonic()
                if now - last_warning > 60:
                    log.warning("event relay paused: %s", exc)
                    last_warning = now
                backoff = min(max_backoff_seconds, backoff * 2)
                stop.wait(backoff)
                continue
            if added >= self.batch_size:
                continue  # a backlog: no pause while catching up
            if added:
                stop.wait(gather_seconds)
                continue
            wake.wait(poll_seconds)
