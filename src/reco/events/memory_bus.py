"""The in-process bus: a bounded FIFO queue between this process's relay and processor.

The embedded default. The relay publishes in id order and one processor drains the
queue, so events reach the online features in id order, each once. Nothing survives
the process, and nothing needs to: the online features are in memory too, and a new
process rebuilds both by replaying the store (the bus starts with no position).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from reco.events.event import Event


class InProcessBus:
    """A bounded, thread-safe FIFO of events (see :class:`reco.events.bus.EventBus`).

    ``max_length`` bounds the queued (unprocessed) events; the relay waits for room,
    so the store, not memory, holds any backlog.
    """

    def __init__(self, max_length: int = 100_000) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        self.max_length = max_length
        self._queue: deque[Event] = deque()
        self._ready = threading.Condition()
        self._position = 0

    def position(self) -> int | None:
        """The largest event id published, None before the first."""
        with self._ready:
            return self._position or None

    def room(self) -> int:
        """Free places in the queue."""
        with self._ready:
            return max(0, self.max_length - len(self._queue))

    def publish(self, events: Sequence[Event]) -> int:
        """Queue the events above the position, in id order; return how many."""
        added = 0
        with self._ready:
            for event in events:
                if event.id <= self._position:
                    continue
                self._queue.append(event)
                self._position = event.id
                added += 1
            if added:
                self._ready.notify_all()
        return added

    def take(self, max_events: int, timeout: float | None = None) -> list[Event]:
        """Up to ``max_events`` queued events, oldest first; waits up to ``timeout``
        seconds for the first one (None: no wait)."""
        with self._ready:
            if not self._queue and timeout:
                self._ready.wait(timeout)
            count = min(max_events, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def backlog(self) -> int:
        """Events published and not yet taken."""
        with self._ready:
            return len(self._queue)

    def wake(self) -> None:
        """Wake a waiting ``take`` (used when stopping)."""
        with self._ready:
            self._ready.notify_all()
