"""What a relay needs from an event bus; the error a bus raises when it is down."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reco.errors import RecoError
from reco.events.event import Event


class BusUnavailable(RecoError):
    """The bus cannot be reached now; the events stay in the store for a later try."""


class EventBus(Protocol):
    """Where the relay publishes stored events, in id order."""

    def position(self) -> int | None:
        """The largest event id the bus ever received, or None when it holds no history
        (new, or lost with its server): the online features must then be rebuilt."""
        ...

    def room(self) -> int:
        """How many more events may be published now without dropping unprocessed ones."""
        ...

    def publish(self, events: Sequence[Event]) -> int:
        """Append events (ascending ids above ``position``); return how many were added.

        Events at or below the position are skipped: publishing twice adds nothing.
        """
        ...
