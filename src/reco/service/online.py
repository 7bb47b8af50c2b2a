"""What a request reads from the real-time event path: history, dislikes, trending.

A known user's history as of now is the model's training history plus every event
stored after the model's snapshot (``model.watermark``). Those events come from two
places, so that an answer never misses one the service has acknowledged:

* the online features' recent history, for events the processors have applied
  (ids up to ``processed_through``): no store query for them;
* the store (``events_since``), for the tail not applied yet: an event is in the
  user's next answer as soon as its 202 was sent, whatever the bus is doing.

The store alone serves when the online history may be truncated (the user has more
events since the snapshot than it keeps) or the features cannot be read (Redis down);
the online history alone serves when the store cannot be reached, so reads go on.
Disliked items come from the features plus the dislikes of the unapplied tail.

Trending: the pipeline's trending source ranks by the online decayed counts as of now
(``np.log(features.trending_scores(items))``), refreshed at most every
``TRENDING_REFRESH_SECONDS`` per worker, by one request at a time: the others keep
serving the previous view meanwhile, so a refresh never stalls every thread. Items
with no event recent enough to count (a zero count) are not trending now and are not
proposed by it; until some item has a non-zero count, the trained trending scores
serve.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from reco.config import EventsConfig
from reco.errors import RecoError
from reco.events import EventsRuntime
from reco.features import HistoryEntry, history_frame
from reco.pipeline.pipeline import Pipeline
from reco.pipeline.sources import TRENDING_SOURCE

log = logging.getLogger(__name__)

TRENDING_REFRESH_SECONDS = 1.0


def is_store_outage(exc: BaseException) -> bool:
    """True for an error that means the store cannot be reached right now (a store
    function's RecoError wrapping a database error counts too)."""
    if isinstance(exc, RecoError) and isinstance(exc.__cause__, DBAPIError):
        exc = exc.__cause__
    return isinstance(exc, DBAPIError) and not isinstance(exc, DataError | IntegrityError)


@dataclass(frozen=True)
class RecentEvents:
    """A user's events after the model's snapshot (None: there are none) and the items
    they disliked."""

    frame: pd.DataFrame | None
    dislikes: frozenset[str]


@dataclass(frozen=True)
class HeldEvents:
    """A user's events after the model's snapshot as the online features hold them:
    ``applied`` (None: none), their dislikes, and ``store_after``, the id after which
    the store holds the rest. ``truncated``: the features may miss some of them (or
    hold none), so the store's events after the snapshot replace ``applied``."""

    applied: pd.DataFrame | None
    dislikes: frozenset[str]
    store_after: int
    truncated: bool


class OnlineView:
    """The request side of the event path for one worker (see the module doc).

    ``runtime`` None (no event path) reads history from the store only.
    """

    def __init__(
        self,
        config: EventsConfig,
        runtime: EventsRuntime | None,
        *,
        trending_refresh_seconds: float = TRENDING_REFRESH_SECONDS,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.trending_refresh_seconds = trending_refresh_seconds
        self._lock = threading.Lock()
        # (the model's pipeline, valid until, its online view)
        self._trending: tuple[Pipeline, float, Pipeline] | None = None
        self._refreshing = False  # a request is computing the next view

    # -- history ---------------------------------------------------------------------

    def recent_events(self, engine: Engine, user_id: str, watermark: int) -> RecentEvents:
        """``user_id``'s events stored (in ``engine``) after ``watermark``, in id order,
        and the items they disliked."""
        from reco.store.events import user_events_since

        held = self.held_events(user_id, watermark)
        try:
            tail, store_read = user_events_since(engine, user_id, held.store_after), True
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            log.warning("store unreachable; %s is served from the online history", user_id)
            tail, store_read = None, False
        return self.combine(held, tail, store_read=store_read)

    def held_events(self, user_id: str, watermark: int) -> HeldEvents:
        """What the online features hold of ``user_id``'s events after ``watermark``,
        and from which id on the store must be read for the rest (no store query)."""
        online = self._online(user_id)
        if online is None:
            return HeldEvents(None, frozenset(), watermark, truncated=True)
        entries, dislikes, through = online
        truncated = len(entries) >= self.config.history_length and entries[0].event_id > watermark
        after = watermark if truncated else max(watermark, through)
        applied = [e for e in entries if watermark < e.event_id <= max(watermark, through)]
        # Most users have no event since the snapshot: no frame is built for them.
        frame = history_frame([user_id], [applied]) if applied else None
        return HeldEvents(frame, dislikes, after, truncated=truncated)

    def combine(
        self, held: HeldEvents, tail: pd.DataFrame | None, *, store_read: bool
    ) -> RecentEvents:
        """The events after the snapshot from what the features hold and the store's
        ``tail`` (its events after ``held.store_after``; ``store_read`` False when the
        store could not be read: the held events alone serve)."""
        if not store_read:
            return RecentEvents(held.applied, held.dislikes)
        dislikes = held.dislikes | self._dislikes_in(tail)
        if held.truncated or held.applied is None:
            return RecentEvents(tail, frozenset(dislikes))
        if tail is None:
            return RecentEvents(held.applied, frozenset(dislikes))
        return RecentEvents(pd.concat([held.applied, tail], ignore_index=True), frozenset(dislikes))

    def _online(self, user_id: str) -> tuple[list[HistoryEntry], frozenset[str], int] | None:
        runtime = self.runtime
        if runtime is None:
            return None
        try:
            through = runtime.processed_through()
            entries = runtime.features.recent_history([user_id])[0]
            dislikes = frozenset(runtime.features.dislikes(user_id))
        except Exception as exc:  # Redis down: the store has every event
            log.warning("online features unreadable (%s); history from the store", exc)
            return None
        return entries, dislikes, through

    def _dislikes_in(self, frame: pd.DataFrame | None) -> set[str]:
        if frame is None:
            return set()
        types = frame["event_type"].to_numpy(dtype=object)
        items = frame["item_id"].to_numpy(dtype=object)
        return {str(i) for i, t in zip(items, types, strict=True) if self.config.is_dislike(t)}

    # -- trending --------------------------------------------------------------------

    def pipeline(self, pipeline: Pipeline) -> Pipeline:
        """``pipeline`` with trending as of now from the online counts (cached briefly).

        One caller at a time recomputes an expired view; the others meanwhile get the
        expired one (about a refresh period old), not a recomputation each; a newly
        loaded model has no view yet, so its first concurrent callers each compute one.
        """
        if self.runtime is None or TRENDING_SOURCE not in pipeline.sources:
            return pipeline
        now = time.monotonic()
        with self._lock:
            cached = self._trending
            current = cached is not None and cached[0] is pipeline
            if current and (cached[1] > now or self._refreshing):
                return cached[2]
            self._refreshing = True
        try:
            view = self._with_online_trending(pipeline)
        except BaseException:
            with self._lock:
                self._refreshing = False
            raise
        with self._lock:
            self._trending = (pipeline, now + self.trending_refresh_seconds, view)
            self._refreshing = False
        return view

    def _with_online_trending(self, pipeline: Pipeline) -> Pipeline:
        assert self.runtime is not None
        try:
            counts = self.runtime.features.trending_scores(list(pipeline.items.ids))
        except Exception as exc:
            log.warning("online trending unreadable (%s); serving the trained trending", exc)
            return pipeline
        if not (counts > 0).any():
            return pipeline
        with np.errstate(divide="ignore"):
            scores = np.log(counts)
        return pipeline.with_global_scores({TRENDING_SOURCE: scores})
