"""What the online features hold and how they are read: the shared vocabulary.

* :class:`EventUpdate` is one event as the stream processor hands it over: its id,
  user, item, type, time, weight (from the configured event types) and the user's
  segments.
* :class:`HistoryEntry` is one event of a user's recent history.
* :class:`OnlineFeatures` is the protocol of the backends
  (:class:`~reco.features.memory.MemoryOnlineFeatures`,
  :class:`~reco.features.redis_features.RedisOnlineFeatures`).

What counts where, and why:

* every event enters the user's recent history (bounded) and the item's all-time
  count, so that count sums to the number of events applied;
* only positive-weight events count towards trending and segment counts: a dislike
  must not make an item look popular;
* events with a negative weight (dislikes) add the item to the user's dislikes, which
  are never recommended to them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from reco.data import schema


@dataclass(frozen=True, slots=True)
class EventUpdate:
    """One event for the online features.

    ``event_id`` is the store's interactions id (increasing); ``timestamp`` epoch
    seconds; ``segments`` labels such as ``"device=mobile"`` (see
    :mod:`reco.events.segments`).
    """

    event_id: int
    user: str
    item: str
    event_type: str
    timestamp: float
    weight: float
    segments: tuple[str, ...] = ()

    @property
    def is_dislike(self) -> bool:
        """A negative weight: the user never wants this item recommended again."""
        return self.weight < 0

    @property
    def counts_as_popular(self) -> bool:
        """Whether it adds to trending and segment counts (a positive weight)."""
        return self.weight > 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event of a user's recent history."""

    event_id: int
    item: str
    timestamp: float
    event_type: str
    weight: float


@runtime_checkable
class OnlineFeatures(Protocol):
    """Features kept up to date event by event, read by the service on every request.

    ``apply`` is idempotent: an event id already applied changes nothing (each backend
    documents how). Reads never fail for unknown users or items: they are empty or 0.
    """

    def apply(self, updates: Sequence[EventUpdate]) -> int:
        """Apply events (ascending ids); return how many were new."""
        ...

    def recent_history(self, user_ids: Sequence[str]) -> list[list[HistoryEntry]]:
        """Each user's recent events, oldest first, at most the configured length."""
        ...

    def trending_scores(self, items: Sequence[str], *, now: float | None = None) -> np.ndarray:
        """Decayed counts of ``items`` at ``now`` (default: the current time), 0 unknown."""
        ...

    def top_trending(self, n: int, *, now: float | None = None) -> list[tuple[str, float]]:
        """The ``n`` most trending items with their decayed counts, best first."""
        ...

    def item_counts(self, items: Sequence[str]) -> np.ndarray:
        """All-time event counts of ``items`` (0 for unknown ones)."""
        ...

    def segment_counts(self, segment: str) -> dict[str, int]:
        """Positive events per item within one segment (e.g. ``"country=DE"``)."""
        ...

    def dislikes(self, user: str) -> set[str]:
        """Items the user disliked: never recommend them to this user."""
        ...

    def events_applied(self) -> int:
        """How many distinct events have been applied in all."""
        ...

    def clear(self) -> None:
        """Forget everything (a rebuild from the store starts from here)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def history_frame(
    user_ids: Sequence[str], histories: Sequence[Sequence[HistoryEntry]], *, after_id: int = 0
) -> pd.DataFrame:
    """Recent histories as a canonical interaction frame in id order, like the store's
    ``events_since``: only events with ids above ``after_id`` (a model's
    ``store_watermark``, whose training data already holds the older ones).

    ``value`` holds each event's *weight* (what its type makes it count), not the raw
    value sent; ``event_id`` is None (clients' ids are not kept online).
    """
    rows = sorted(
        (
            (entry.event_id, user, entry.item, entry.timestamp, entry.event_type, entry.weight)
            for user, entries in zip(user_ids, histories, strict=True)
            for entry in entries
            if entry.event_id > after_id
        ),
        key=lambda row: row[0],
    )
    frame = schema.empty_interactions()
    if not rows:
        return frame
    ids, users, items, stamps, types, weights = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            schema.USER: pd.array(users, dtype=schema.STR),
            schema.ITEM: pd.array(items, dtype=schema.STR),
            schema.TIMESTAMP: pd.array(np.floor(stamps).astype(np.int64), dtype="Int64"),
            # The weight the event types gave it: what a history row should add up.
            schema.VALUE: np.asarray(weights, dtype=np.float64),
            schema.EVENT_TYPE: pd.array(types, dtype=schema.STR),
            schema.EVENT_ID: pd.Series([None] * len(ids), dtype=object),
        }
    )
