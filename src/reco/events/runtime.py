"""The event path of one process, built from settings: relay, bus, processor, features.

The service creates one :class:`EventsRuntime` in its lifespan, starts it, calls
:meth:`EventsRuntime.notify` after each ``append_events`` and reads
:attr:`EventsRuntime.features` on every request; ``reco worker`` runs one with the
processor on. In the embedded default (memory bus) every process runs its own relay
and processor over the shared store, so each uvicorn worker's in-memory features see
every event. With Redis, relays in any number of processes publish to one stream and
the processors of ``reco worker`` (and of the service, when configured) share it as
one consumer group.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from sqlalchemy import Engine

from reco.config import EventsConfig, Settings
from reco.errors import ConfigurationError
from reco.events.memory_bus import InProcessBus
from reco.events.processor import (
    MemoryDrain,
    RedisConsumer,
    StreamProcessor,
    UsersHook,
    consumer_name,
)
from reco.events.redis_bus import RedisStreamsBus
from reco.events.relay import Relay
from reco.events.segments import SegmentResolver
from reco.features.base import OnlineFeatures
from reco.features.memory import MemoryOnlineFeatures
from reco.features.redis_features import RedisOnlineFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsStatus:
    """A snapshot for health and metrics: what this process published and applied,
    how far the bus and the group are."""

    bus: str
    published: int
    applied: int
    bus_position: int | None
    processed_through: int | None


class EventsRuntime:
    """Relay + bus + processor + online features, with their threads.

    Build it with :meth:`from_settings`. ``relay`` / ``processor`` are None when this
    process does not run that part.
    """

    def __init__(
        self,
        *,
        config: EventsConfig,
        bus: InProcessBus | RedisStreamsBus,
        features: OnlineFeatures,
        relay: Relay | None,
        processor: StreamProcessor | None,
        consumer: MemoryDrain | RedisConsumer | None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.features = features
        self.relay = relay
        self.processor = processor
        self.consumer = consumer
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        *,
        on_users: UsersHook | None = None,
        relay: bool = True,
        process: bool | None = None,
        consumer: str | None = None,
    ) -> EventsRuntime:
        """The event path ``settings.events`` describes, over the store ``engine``.

        ``process`` None follows ``events.process_in_service`` (default: process with
        the memory bus, not with Redis, where ``reco worker`` does). ``on_users`` gets
        the users of each applied batch (drop their cached answers). ``consumer``
        names this process in the Redis group (default: host-pid-random).
        """
        config = settings.events
        kind = config.resolved_bus(settings.redis_url)
        if process is None:
            process = (
                config.process_in_service
                if config.process_in_service is not None
                else kind == "memory"
            )
        bus: InProcessBus | RedisStreamsBus
        features: OnlineFeatures
        if kind == "memory":
            bus = InProcessBus(config.max_stream_length)
            features = MemoryOnlineFeatures(
                history_length=config.history_length,
                half_life_days=config.trending_half_life_days,
            )
        else:
            if not settings.redis_url:
                raise ConfigurationError(
                    "RECO_EVENTS__BUS=redis needs RECO_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
                )
            client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
            bus = RedisStreamsBus(
                client,
                stream=config.stream,
                group=config.group,
                max_length=config.max_stream_length,
                claim_idle_ms=config.claim_idle_ms,
            )
            features = RedisOnlineFeatures(
                client,
                prefix=config.key_prefix,
                history_length=config.history_length,
                half_life_days=config.trending_half_life_days,
                history_ttl_days=config.history_ttl_days,
            )
        the_relay = (
            Relay(
                engine,
                bus,
                batch_size=config.relay_batch,
                lock_timeout_ms=config.relay_lock_timeout_ms,
                rebuild_max_events=config.rebuild_max_events,
            )
            if relay
            else None
        )
        processor = the_consumer = None
        if process:
            segments = (
                SegmentResolver(engine, config.segment_attributes)
                if config.segment_attributes
                else None
            )
            processor = StreamProcessor(features, config, segments=segments, on_users=on_users)
            if isinstance(bus, InProcessBus):
                the_consumer = MemoryDrain(bus, processor, batch_size=config.process_batch)
            else:
                the_consumer = RedisConsumer(
                    bus,
                    processor,
                    name=consumer or consumer_name(),
                    batch_size=config.process_batch,
                    block_ms=config.block_ms,
                )
        if isinstance(bus, InProcessBus) and (the_relay is None) != (the_consumer is None):
            raise ConfigurationError(
                "the in-process bus needs its relay and its processor in the same process; "
                "use the Redis bus (RECO_REDIS_URL) to run them apart"
            )
        return cls(
            config=config,
            bus=bus,
            features=features,
            relay=the_relay,
            processor=processor,
            consumer=the_consumer,
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay and processor threads (daemons; :meth:`stop` ends them)."""
        if self._threads:
            return
        self._stop.clear()
        if self.relay is not None:
            relay = self.relay
            self._spawn(
                "reco-event-relay",
                lambda: relay.run(self._stop, self._wake, poll_seconds=self.config.poll_seconds),
            )
        if self.consumer is not None:
            consumer = self.consumer
            self._spawn("reco-event-processor", lambda: consumer.run(self._stop))

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def notify(self) -> None:
        """Events were just stored: relay them now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads (each finishes its current batch) and close connections."""
        self._stop.set()
        self._wake.set()
        if isinstance(self.bus, InProcessBus):
            self.bus.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("event threads still running after %.1f s: %s", timeout, alive)
        self._threads.clear()
        self.features.close()

    # -- progress --------------------------------------------------------------------

    def processed_through(self) -> int:
        """The largest event id up to which every event has reached the online features."""
        if isinstance(self.bus, RedisStreamsBus):
            return self.bus.processed_through()
        assert isinstance(self.features, MemoryOnlineFeatures)
        return self.features.applied_through

    def wait_processed(self, event_id: int, timeout: float = 10.0) -> bool:
        """Wait until every event up to ``event_id`` is applied; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.processed_through() >= event_id:
                return True
            if time.monotonic() >= deadline:
                return False
            self.notify()
            time.sleep(0.005)

    def status(self) -> EventsStatus:
        """Counts and positions for health pages and metrics (None where unknown)."""
        try:
            position = self.bus.position()
            through = self.processed_through()
        except Exception:  # Redis down: say so with None rather than fail a health check
            position = through = None
        return EventsStatus(
            bus="redis" if isinstance(self.bus, RedisStreamsBus) else "memory",
            published=self.relay.published if self.relay else 0,
            applied=self.processor.applied if self.processor else 0,
            bus_position=position,
            processed_through=through,
        )
