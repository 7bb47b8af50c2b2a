"""The stream processor: events from the bus into the online features, then hooks.

:class:`StreamProcessor` turns bus events into feature updates (weights from the
configured event types, segments from the users' stored attributes), applies them
and calls ``on_users`` with the users whose events were applied, so the service can
drop their cached recommendations. Where exactly-once comes from:

* in-process bus: one relay publishes in id order into one FIFO drained by one
  processor; the memory features skip ids at or below the largest applied;
* Redis Streams: the features' script acknowledges each entry and applies it in one
  atomic step, only if that acknowledgement was the first (see
  :mod:`reco.features.redis_features`). Redelivery, claims and crashes at any point
  therefore change nothing twice.

:class:`MemoryDrain` and :class:`RedisConsumer` are the loops that feed it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from reco.config import EventsConfig
from reco.events.event import Event
from reco.events.memory_bus import InProcessBus
from reco.events.redis_bus import RedisStreamsBus
from reco.events.segments import SegmentResolver
from reco.features.base import EventUpdate, OnlineFeatures
from reco.features.redis_features import RedisOnlineFeatures, StreamAck

log = logging.getLogger(__name__)

UsersHook = Callable[[Sequence[str]], None]


class StreamProcessor:
    """Applies batches of events to ``features``.

    ``segments`` resolves users' segments (None: no segment counts); ``on_users`` is
    called with the users of every applied batch (e.g. ``cache.invalidate_users``);
    its failures are logged, never raised: the events are applied by then.
    """

    def __init__(
        self,
        features: OnlineFeatures,
        config: EventsConfig,
        *,
        segments: SegmentResolver | None = None,
        on_users: UsersHook | None = None,
    ) -> None:
        self.features = features
        self.config = config
        self.segments = segments
        self.on_users = on_users
        self.received = 0
        self.applied = 0
        self._unknown_types: set[str] = set()

    def updates(self, events: Sequence[Event]) -> list[EventUpdate]:
        """The feature updates of ``events`` (same order)."""
        segments = self.segments.segments(e.user for e in events) if self.segments else {}
        return [
            EventUpdate(
                event_id=event.id,
                user=event.user,
                item=event.item,
                event_type=event.event_type,
                timestamp=float(event.timestamp),
                weight=self._weight(event),
                segments=segments.get(event.user, ()),
            )
            for event in events
        ]

    def _weight(self, event: Event) -> float:
        if event.event_type in self.config.types:
            return self.config.event_weight(event.event_type, event.value)
        # Stored before the type was removed from the configuration, or ingested from a
        # file: it happened, so it counts as a plain interaction.
        if event.event_type not in self._unknown_types:
            self._unknown_types.add(event.event_type)
            log.warning(
                "events of unknown type %r count with weight 1; known types: %s",
                event.event_type,
                ", ".join(sorted(self.config.types)),
            )
        return 1.0

    def process(self, events: Sequence[Event], *, ack: StreamAck | None = None) -> int:
        """Apply ``events`` (acknowledging them on ``ack``'s stream); return how many
        were new."""
        if not events:
            return 0
        updates = self.updates(events)
        if ack is not None:
            if not isinstance(self.features, RedisOnlineFeatures):
                raise TypeError("events from a Redis stream need RedisOnlineFeatures")
            applied = self.features.apply(updates, ack=ack)
        else:
            applied = self.features.apply(updates)
        self.received += len(events)
        self.applied += applied
        if self.on_users is not None:
            try:
                self.on_users(list(dict.fromkeys(e.user for e in events)))
            except Exception as exc:  # a stale cache entry expires; the event is applied
                log.warning("could not invalidate cached recommendations: %s", exc)
        return applied


class MemoryDrain:
    """Feeds the processor from an :class:`InProcessBus` (the embedded path)."""

    def __init__(self, bus: InProcessBus, processor: StreamProcessor, *, batch_size: int = 500):
        self.bus = bus
        self.processor = processor
        self.batch_size = batch_size

    def run_once(self, timeout: float | None = None) -> int:
        """Apply one batch of queued events; return how many were new."""
        return self.processor.process(self.bus.take(self.batch_size, timeout))

    def run(self, stop: threading.Event, *, wait_seconds: float = 0.5) -> None:
        """Drain until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.run_once(wait_seconds)
            except Exception:  # never silently stop applying events
                log.exception("applying events failed; retrying")
                stop.wait(1.0)


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisConsumer:
    """One consumer of the group: claims entries of dead consumers, reads new ones,
    has the processor apply and acknowledge them."""

    def __init__(
        self,
        bus: RedisStreamsBus,
        processor: StreamProcessor,
        *,
        name: str | None = None,
        batch_size: int = 500,
        block_ms: int = 500,
    ) -> None:
        self.bus = bus
        self.processor = processor
        self.name = name or consumer_name()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.ack = StreamAck(bus.stream, bus.group)
        # Claims are checked this often: a fraction of the idle time that triggers them.
        self.claim_every = max(0.05, bus.claim_idle_ms / 4000)
        self._next_claim = 0.0
        self._next_cleanup = time.monotonic() + 600

    def run_once(self, *, block: bool = True) -> int:
        """Process claimed entries if any are due, else new ones; return how many were new."""
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_every
            claimed = self.bus.claim(self.name, self.batch_size)
            if claimed:
                log.info("%s claimed %d entries of unresponsive consumers", self.name, len(claimed))
                self._next_claim = now  # there may be more
                return self.processor.process(claimed, ack=self.ack)
            if now >= self._next_cleanup:
                self._next_cleanup = now + 600
                self.bus.forget_idle_consumers(keep=self.name)
        events = self.bus.read(self.name, self.batch_size, self.block_ms if block else None)
        return self.processor.process(events, ack=self.ack)

    def run(self, stop: threading.Event, *, max_backoff_seconds: float = 5.0) -> None:
        """Consume until ``stop`` is set; Redis failures are logged and retried."""
        self.bus.ensure_group()
        backoff = 0.1
        last_warning = 0.0
        while not stop.is_set():
            try:
                self.run_once()
                backoff = 0.1
            except Exception as exc:  # Redis down or restarting: wait and retry
                now = time.monotonic()
                if now - last_warning > 60:
                    log.warning("event processing paused: %s", exc)
                    last_warning = now
                stop.wait(backoff)
                backoff = min(max_backoff_seconds, backoff * 2)
                # The stream may have been lost with the server; if it is still down,
                # the next round says so.
                with contextlib.suppress(Exception):
                    self.bus.ensure_group()
