"""An event on the bus: one stored interaction, identified by its interactions id."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring

# A str as a JSON string (quoted, escaped; non-ASCII kept as is).
_string = encode_basestring


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction as the relay publishes it.

    ``id`` is the store's interactions id (the event id on the bus; ids increase with
    insertion), ``timestamp`` epoch seconds (the time the interaction was ingested
    when it came without one), ``value`` the raw value (None when absent).
    """

    id: int
    user: str
    item: str
    event_type: str
    timestamp: float
    value: float | None = None

    @property
    def entry_id(self) -> str:
        """The Redis stream entry id: the event id itself, so the stream is in id order
        and refuses a second copy of an event (see :mod:`reco.events.redis_bus`)."""
        return f"{self.id}-0"

    def payload(self) -> str:
        """The stream message's one field (the id is the entry id): JSON of user, item,
        type, time and value. One field, not five, because parsing replies field by
        field is most of a consumer's work."""
        # Assembled from its parts: what json.dumps writes (strings escaped by json's own
        # C function, floats as repr; both are finite), at a third of its cost per call.
        value = "null" if self.value is None else repr(self.value)
        return (
            f"[{_string(self.user)},{_string(self.item)},{_string(self.event_type)},"
            f"{self.timestamp!r},{value}]"
        )

    @classmethod
    def from_entry(cls, entry_id: str | bytes, fields: Mapping[str | bytes, str | bytes]) -> Event:
        """The event of a stream entry; ValueError when the entry is not one of ours."""
        shown = _text(entry_id)
        try:
            number, _, sequence = shown.partition("-")
            if sequence not in ("", "0"):
                raise ValueError(f"entry id {shown!r} is not '<event id>-0'")
            payload = {_text(k): v for k, v in fields.items()}["e"]
            user, item, event_type, stamp, value = json.loads(payload)
            if not isinstance(stamp, int | float) or not math.isfinite(stamp):
                raise ValueError(f"timestamp {stamp!r} is not a finite number")
            if not all(isinstance(v, str) for v in (user, item, event_type)):
                raise ValueError("user, item and event type must be strings")
            value = None if value is None else float(value)
            return cls(int(number), user, item, event_type, float(stamp), value)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"stream entry {shown!r} is not a reco event: {exc}") from None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
