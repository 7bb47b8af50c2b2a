"""The real-time event path: store -> relay -> bus -> stream processor -> online features.

* :mod:`reco.events.outbox` reads settled stored events in id order;
* :class:`Relay` publishes them to a bus (outbox pattern; the store is the truth);
* buses: :class:`InProcessBus` (embedded) and :class:`RedisStreamsBus` (consumer
  groups, claims of dead consumers' entries, bounded by trimming);
* :class:`StreamProcessor` applies events to the online features
  (:mod:`reco.features`) exactly once in effect, and calls a hook with the users
  whose recommendations changed;
* :class:`EventsRuntime` wires all of it from ``Settings.events`` for the service
  and ``reco worker``.
"""

from reco.events.bus import BusUnavailable, EventBus
from reco.events.event import Event
from reco.events.memory_bus import InProcessBus
from reco.events.processor import MemoryDrain, RedisConsumer, StreamProcessor
from reco.events.redis_bus import RedisStreamsBus
from reco.events.relay import Relay
from reco.events.runtime import EventsRuntime, EventsStatus
from reco.events.segments import SegmentResolver, context_segments, segment_label

__all__ = [
    "BusUnavailable",
    "Event",
    "EventBus",
    "EventsRuntime",
    "EventsStatus",
    "InProcessBus",
    "MemoryDrain",
    "RedisConsumer",
    "RedisStreamsBus",
    "Relay",
    "SegmentResolver",
    "StreamProcessor",
    "context_segments",
    "segment_label",
]
