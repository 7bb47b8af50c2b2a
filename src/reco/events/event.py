"""An event on the bus: one stored interaction, identified by its interactions id."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


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

    def fields(self) -> dict[str, str]:
        """The stream message (the id is the entry id, not a field)."""
        return {
            "u": self.user,
            "i": self.item,
            "t": self.event_type,
            "ts": repr(float(self.timestamp)),
            "v": "" if self.value is None else repr(float(self.value)),
        }

    @classmethod
    def from_entry(cls, entry_id: str | bytes, fields: Mapping[str | bytes, str | bytes]) -> Event:
        """The event of a stream entry; ValueError when the entry is not one of ours."""
        text = {_text(k): _text(v) for k, v in fields.items()}
        try:
            number, _, sequence = _text(entry_id).partition("-")
            if sequence not in ("", "0"):
                raise ValueError(f"entry id {_text(entry_id)!r} is not '<event id>-0'")
            value = float(text["v"]) if text.get("v") else None
            stamp = float(text["ts"])
            if not math.isfinite(stamp):
                raise ValueError(f"timestamp {stamp!r} is not finite")
            return cls(int(number), text["u"], text["i"], text["t"], stamp, value)
        except (KeyError, ValueError) as exc:
            shown = _text(entry_id)
            raise ValueError(f"stream entry {shown!r} is not a reco event: {exc}") from None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
