"""Online features in this process's memory: the embedded default.

Idempotent by a high-water mark: events are applied in ascending id order and an id at
or below the largest one applied is skipped. That is exactly-once in effect because
the in-process bus has one relay publishing in id order and one consumer draining one
FIFO queue, so an event is never first seen after a larger id; a repeat (the same
batch handed over twice) is always at or below the mark. Everything lives and dies
with the process; a new process rebuilds it by replaying the store.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np

from reco.features.base import EventUpdate, HistoryEntry
from reco.features.decay import (
    decayed_count,
    decayed_counts,
    event_exponent,
    half_life_seconds,
    log2_add,
)


class MemoryOnlineFeatures:
    """Thread-safe in-memory online features (see :class:`reco.features.base.OnlineFeatures`).

    ``history_length`` bounds each user's recent history; ``half_life_days`` is the
    trending half-life.
    """

    def __init__(self, *, history_length: int = 200, half_life_days: float = 7.0) -> None:
        if history_length < 1:
            raise ValueError(f"history_length must be at least 1, got {history_length}")
        self.history_length = history_length
        self.half_life = half_life_seconds(half_life_days)
        self._lock = threading.Lock()
        self._reset()

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self._history: dict[str, deque[HistoryEntry]] = {}
        self._counts: Counter[str] = Counter()
        self._trend: dict[str, float] = {}
        self._segments: dict[str, Counter[str]] = {}
        self._dislikes: dict[str, set[str]] = {}
        self._applied_through = 0
        self._applied = 0

    # -- writing ---------------------------------------------------------------------

    def apply(self, updates: Sequence[EventUpdate]) -> int:
        """Apply the events whose ids are above every id applied so far; return how many.

        ``updates`` are taken in ascending id order (sorted here, as the bus delivers them).
        """
        applied = 0
        with self._lock:
            for update in sorted(updates, key=lambda u: u.event_id):
                if update.event_id <= self._applied_through:
                    continue
                self._apply_one(update)
                self._applied_through = update.event_id
                applied += 1
            self._applied += applied
        return applied

    def _apply_one(self, update: EventUpdate) -> None:
        history = self._history.get(update.user)
        if history is None:
            history = self._history[update.user] = deque(maxlen=self.history_length)
        history.append(
            HistoryEntry(
                update.event_id, update.item, update.timestamp, update.event_type, update.weight
            )
        )
        self._counts[update.item] += 1
        if update.counts_as_popular:
            exponent = event_exponent(update.timestamp, self.half_life)
            self._trend[update.item] = log2_add(self._trend.get(update.item), exponent)
            for segment in update.segments:
                self._segments.setdefault(segment, Counter())[update.item] += 1
        if update.is_dislike:
            self._dislikes.setdefault(update.user, set()).add(update.item)

    # -- reading ---------------------------------------------------------------------

    def recent_history(self, user_ids: Sequence[str]) -> list[list[HistoryEntry]]:
        """Each user's recent events, oldest first."""
        with self._lock:
            return [list(self._history.get(user, ())) for user in user_ids]

    def trending_scores(self, items: Sequence[str], *, now: float | None = None) -> np.ndarray:
        """Decayed counts of ``items`` at ``now`` (default: the current time)."""
        at = time.time() if now is None else now
        with self._lock:
            scores = [self._trend.get(item) for item in items]
        return decayed_counts(scores, at, self.half_life)

    def top_trending(self, n: int, *, now: float | None = None) -> list[tuple[str, float]]:
        """The ``n`` items with the largest decayed counts, best first (ties by id)."""
        at = time.time() if now is None else now
        with self._lock:
            best = heapq.nsmallest(max(0, n), self._trend.items(), key=lambda p: (-p[1], p[0]))
        return [(item, decayed_count(score, at, self.half_life)) for item, score in best]

    def item_counts(self, items: Sequence[str]) -> np.ndarray:
        """All-time event counts of ``items``."""
        with self._lock:
            return np.array([self._counts.get(item, 0) for item in items], dtype=np.int64)

    def segment_counts(self, segment: str) -> dict[str, int]:
        """Positive events per item within ``segment``."""
        with self._lock:
            return dict(self._segments.get(segment, {}))

    def dislikes(self, user: str) -> set[str]:
        """Items ``user`` disliked."""
        with self._lock:
            return set(self._dislikes.get(user, ()))

    def events_applied(self) -> int:
        """Distinct events applied since the last clear."""
        with self._lock:
            return self._applied

    @property
    def applied_through(self) -> int:
        """The largest event id applied (0 when none)."""
        return self._applied_through

    def close(self) -> None:
        """Nothing to release."""
