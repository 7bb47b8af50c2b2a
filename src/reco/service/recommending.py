"""Answers of the recommendation routes, from the served model and the store.

A known user's history is the model's stored history plus the events stored after the
model's training snapshot, read from the online features and the store's unapplied
tail (:mod:`reco.service.online`), so what they just consumed leaves their next answer
at once; items they disliked are never recommended to them. Trending ranks by the
online counts as of now. A deleted user is served as a new one. A user the model
never saw gets the cold route: popularity for their context (stored attributes, then
the request's), blended with trending. While the store cannot be reached, answers go
on from the loaded model, the online features and the cache.

Items the store marks unavailable or deleted are masked out of every answer; answers
for users are cached as JSON bytes under (user, parameters + catalogue fingerprint,
model version), with a fresh ``recommendation_id`` spliced into each response.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from reco.errors import RecoError
from reco.pipeline.filters import Filters
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import Pipeline, Recommendation
from reco.service.errors import Problem
from reco.service.model_holder import LoadedModel
from reco.service.new_item_answers import (
    similar_to_new_item,
    with_new_items,
    with_new_neighbours,
)
from reco.service.online import OnlineView, is_store_outage
from reco.service.schemas import SessionEvent, SessionRequest
from reco.service.state import ServiceState

log = logging.getLogger(__name__)

DEFAULT_N = 10
# How long this worker remembers that it changed a user (longer than any request).
_CHANGE_MEMORY_SECONDS = 60.0
# An item's source in an answer body: the JSON string after "source":.
_SOURCE_FIELD = re.compile(rb'"source":("(?:[^"\\]|\\.)*")')
# Similar items: how many extra neighbours to ask for when some may be unavailable.
_MAX_SIMILAR_SPARE = 1_000


@dataclass(frozen=True)
class Query:
    """What a recommendation request asks for, besides whom."""

    n: int = DEFAULT_N
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    explain: bool = True
    context: Mapping[str, Any] = field(default_factory=dict)

    def filters(self) -> Filters:
        """The pipeline filters of this query."""
        return Filters(
            include_categories=self.categories,
            exclude_categories=self.exclude_categories,
            exclude_items=self.exclude,
        )

    def cache_params(self, catalog_fingerprint: str) -> str:
        """A canonical text of everything that shapes the answer, for the cache key."""
        return json.dumps(
            [
                self.n,
                sorted(self.categories),
                sorted(self.exclude_categories),
                sorted(self.exclude),
                self.explain,
                sorted((str(k), str(v)) for k, v in self.context.items()),
                catalog_fingerprint,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )


def new_recommendation_id() -> str:
    """A fresh id for one answer."""
    return str(uuid.uuid4())


def with_recommendation_id(body: bytes, recommendation_id: str) -> bytes:
    """``body`` (a JSON object) with ``recommendation_id`` added as its first member."""
    return b'{"recommendation_id":"' + recommendation_id.encode() + b'",' + body[1:]


def cached_answer(
    state: ServiceState, model: LoadedModel, user_id: str, query: Query
) -> bytes | None:
    """The answer body (without recommendation id) if this worker holds it in memory,
    else None (then :func:`user_answer`). No I/O: the route asks on its event loop, so
    a hit costs no thread hop."""
    cache = state.cache
    if cache is None:
        return None
    cached = cache.get_local(user_id, query.cache_params(state.catalog.fingerprint), model.version)
    if cached is not None:
        state.metrics.cache_lookups.labels("hit").inc()
        _count_cached(state, cached)
    return cached


def user_answer(
    state: ServiceState, model: LoadedModel, user_id: str, query: Query
) -> tuple[bytes, bool]:
    """The answer body for a user (without recommendation id) and whether it was cached."""
    cache = state.cache
    params = query.cache_params(state.catalog.fingerprint)
    if cache is not None:
        cached = cache.get(user_id, params, model.version)
        state.metrics.cache_lookups.labels("hit" if cached is not None else "miss").inc()
        if cached is not None:
            _count_cached(state, cached)
            return cached, True
    started = time.monotonic()
    now = user_history(state, model, user_id)
    merged = {**now.attributes, **query.context}
    filters = query.filters()
    if now.dislikes:
        filters = replace(filters, exclude_items=(*filters.exclude_items, *sorted(now.dislikes)))
    found = _recommend(state, model, now.histories, merged, filters, query.n, None, now.events)
    kind = "cold" if _is_cold(model.pipeline, now.histories) else "known"
    _count(state, kind, found)
    body = _dumps(
        {
            "user_id": user_id,
            "items": _items(found, query.explain),
            "model_version": model.version,
        }
    )
    # An event that arrived while this answer was computed must not be hidden by it.
    if cache is not None and state.changed_users.get(user_id, -math.inf) < started:
        cache.put(user_id, params, model.version, body)
    return body, False


def forget_answers(state: ServiceState, user_ids: Sequence[str]) -> None:
    """After a change to these users (events, attributes, deletion): drop their cached
    answers everywhere, and keep answers being computed right now out of the cache."""
    now = time.monotonic()
    changed = state.changed_users
    if len(changed) > 10_000:
        for user, when in list(changed.items()):
            if now - when > _CHANGE_MEMORY_SECONDS:
                changed.pop(user, None)
    for user in user_ids:
        changed[user] = now
    if state.cache is not None:
        state.cache.invalidate_users(user_ids)


@dataclass(frozen=True)
class UserNow:
    """What an answer knows of a user as of now: their history row (training history
    plus newer events on items the model knows), stored attributes, disliked items,
    and their events since the model's snapshot (None: none), new items' included."""

    histories: Histories
    attributes: dict[str, Any]
    dislikes: frozenset[str]
    events: pd.DataFrame | None


def user_history(state: ServiceState, model: LoadedModel, user_id: str) -> UserNow:
    """The user as of now (see :class:`UserNow`).

    Stored history (unless the user was deleted) plus the events stored after the
    model's snapshot. With the store unreachable: no attributes, not deleted, and the
    events the online features hold.
    """
    from reco.store.events import read_user_for_answer

    pipeline = model.pipeline
    online = state.online or OnlineView(state.settings.events, None)
    held = online.held_events(user_id, model.watermark)
    try:
        # The user's row and their events the features do not hold: one store round.
        read = read_user_for_answer(state.engine, user_id, held.store_after)
    except Exception as exc:
        if not is_store_outage(exc):
            raise
        log.warning("store unreachable; %s is served from the online history", user_id)
        read = None
    attributes = {} if read is None else _scalar_attributes(read.attributes)
    if read is not None and read.deleted:
        base = Histories.empty(1, len(pipeline.items), users=np.array([-1]))
    else:
        base = pipeline.histories_for([user_id])
    recent = online.combine(
        held, None if read is None else read.events, store_read=read is not None
    )
    return UserNow(
        _add_events(pipeline, base, recent.frame), attributes, recent.dislikes, recent.frame
    )


def session_answer(state: ServiceState, model: LoadedModel, request: SessionRequest) -> bytes:
    """The answer body (with its recommendation id) for an anonymous session, a known
    user plus session events, or a rerank of the caller's candidates."""
    pipeline = model.pipeline
    if request.user_id is not None:
        now = user_history(state, model, request.user_id)
    else:
        empty = Histories.empty(1, len(pipeline.items), users=np.array([-1]))
        now = UserNow(empty, {}, frozenset(), None)
    events, unknown_history = _session_events(pipeline, request.history)
    histories = _add_events(pipeline, now.histories, events)
    consumed = [frame for frame in (now.events, events) if frame is not None and len(frame)]
    allowed = None
    unknown_candidates: list[str] = []
    n = request.n or DEFAULT_N
    if request.candidates is not None:
        ids = list(dict.fromkeys(request.candidates))
        found = pipeline.items.lookup(ids)
        unknown_candidates = [i for i, k in zip(ids, found, strict=True) if k < 0]
        allowed = np.zeros(len(pipeline.items), dtype=bool)
        allowed[found[found >= 0]] = True
        n = request.n or max(1, int((found >= 0).sum()))
    check_n(state, n)
    context = {**now.attributes, **request.context}
    filters = Filters(
        include_categories=tuple(request.category),
        exclude_categories=tuple(request.exclude_category),
        exclude_items=(*request.exclude, *sorted(now.dislikes)),
    )
    if allowed is not None and not allowed.any():
        found_items: list[Recommendation] = []
    else:
        found_items = _recommend(
            state, model, histories, context, filters, n, allowed,
            pd.concat(consumed, ignore_index=True) if consumed else None,
        )  # fmt: skip
    kind = "rerank" if allowed is not None else "anonymous"
    _count(state, kind, found_items)
    return with_recommendation_id(
        _dumps(
            {
                "user_id": request.user_id,
                "items": _items(found_items, request.explain),
                "model_version": model.version,
                "unknown_history": unknown_history,
                "unknown_candidates": unknown_candidates,
            }
        ),
        new_recommendation_id(),
    )


def similar_answer(state: ServiceState, model: LoadedModel, item_id: str, n: int) -> bytes:
    """The answer body (with its recommendation id) of the items most like ``item_id``:
    a known item's neighbours, the new-items share of them new items close in content;
    a new item's content neighbours among known and new items."""
    check_n(state, n)
    items = model.pipeline.items
    if item_id not in items:
        # Not trained with it: a new item (404 when the store does not have it either).
        found = similar_to_new_item(state, model, item_id, n)
    else:
        unavailable = state.catalog.unavailable
        spare = min(len(unavailable), _MAX_SIMILAR_SPARE)
        try:
            found = model.pipeline.similar_items(item_id, n + spare)
        except RecoError as exc:
            if type(exc) is not RecoError:
                raise
            found = []  # nothing relates this item to others: an empty answer, not an error
        found = [r for r in found if r.item_id not in unavailable][:n]
        found = with_new_neighbours(state, model, items.index_of(item_id), found, n)
    _count(state, "similar", found)
    return with_recommendation_id(
        _dumps(
            {
                "item_id": item_id,
                "items": _items(found, True),
                "model_version": model.version,
            }
        ),
        new_recommendation_id(),
    )


def check_n(state: ServiceState, n: int) -> None:
    """422 when ``n`` passes the configured maximum."""
    limit = state.settings.service.max_n
    if n > limit:
        raise Problem(
            422,
            f"n={n} is more than this service returns at once ({limit}); ask for at most "
            f"{limit} items",
            kind="invalid-request",
            extra={"errors": [{"field": "n", "message": f"at most {limit}"}]},
        )


# -- helpers --------------------------------------------------------------------------


def _recommend(
    state: ServiceState,
    model: LoadedModel,
    histories: Histories,
    context: dict[str, Any],
    filters: Filters,
    n: int,
    allowed: np.ndarray | None,
    events: pd.DataFrame | None,
) -> list[Recommendation]:
    """The model's answer for one history row. Outside a rerank (``allowed`` given: it
    ranks only the caller's candidates the model knows), the new-items share of its
    slots goes to items added since training; ``events`` (the row's events since the
    model's snapshot, None: none) name the new items it already consumed."""
    rerank = allowed is not None
    pipeline = model.pipeline if state.online is None else state.online.pipeline(model.pipeline)
    available = state.catalog.allowed(model)
    if available is not None:
        allowed = available if allowed is None else allowed & available
    try:
        found = state.scorer.recommend(
            pipeline, histories, n, context=context, filters=filters, allowed=allowed
        )
    except ValueError as exc:
        # The pipeline names the bad input (e.g. an age that is not a number).
        raise Problem(
            422, f"the request cannot be answered: {exc}", kind="invalid-request"
        ) from None
    if rerank:
        return found
    return with_new_items(state, model, model.pipeline, histories, filters, n, found, events)


def _add_events(pipeline: Pipeline, base: Histories, events: pd.DataFrame | None) -> Histories:
    """One history row plus newer events (a canonical interaction frame)."""
    if events is None or len(events) == 0:
        return base
    items = pipeline.items.lookup(events["item_id"].to_numpy(dtype=object))
    keep = items >= 0
    if not keep.any():
        return base
    times = events["timestamp"].astype("float64").to_numpy(na_value=np.nan)
    seen = None
    if pipeline.config.seen_event_types is not None:
        types = events["event_type"].to_numpy(dtype=object)
        seen = np.isin(types, pipeline.config.seen_event_types)[keep]
    return base.with_events(
        np.zeros(int(keep.sum()), dtype=np.int64), items[keep], times=times[keep], seen=seen
    )


def _session_events(
    pipeline: Pipeline, history: Sequence[str | SessionEvent]
) -> tuple[pd.DataFrame | None, list[str]]:
    """The session's history as a canonical-like frame, and the ids the model lacks."""
    if not history:
        return None, []
    from reco.store.events import events_frame

    records = [
        {"user_id": "session", "item_id": h}
        if isinstance(h, str)
        else {"user_id": "session", **h.model_dump()}
        for h in history
    ]
    frame = events_frame(records)
    found = pipeline.items.lookup(frame["item_id"].to_numpy(dtype=object))
    unknown = list(dict.fromkeys(frame["item_id"].to_numpy(dtype=object)[found < 0].tolist()))
    return frame, [str(u) for u in unknown]


def _is_cold(pipeline: Pipeline, histories: Histories) -> bool:
    return bool(histories.lengths()[0] < pipeline.cold_threshold)


def _scalar_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Stored user attributes usable as request context (plain values only)."""
    if not attributes:
        return {}
    return {
        str(k): v
        for k, v in attributes.items()
        if isinstance(v, str | int | float | bool) and not (isinstance(v, float) and math.isnan(v))
    }


def _items(found: Sequence[Recommendation], explain: bool) -> list[dict[str, Any]]:
    out = []
    for rec in found:
        entry: dict[str, Any] = {
            "item_id": rec.item_id,
            "score": rec.score if math.isfinite(rec.score) else 0.0,
            "source": rec.source,
        }
        if explain:
            entry["explanation"] = rec.explanation
        out.append(entry)
    return out


def _count(state: ServiceState, kind: str, found: Sequence[Recommendation]) -> None:
    _count_sources(state, kind, Counter(rec.source for rec in found))


def _count_cached(state: ServiceState, body: bytes) -> None:
    # The items' sources as _dumps wrote them, found without parsing the whole answer
    # (in a JSON text a quote inside a value is escaped, so only members match), and
    # counted raw first so that each distinct source is decoded once, not per item.
    sources: Counter[str] = Counter()
    for raw, count in Counter(_SOURCE_FIELD.findall(body)).items():
        sources[json.loads(raw)] += count
    _count_sources(state, "cached", sources)


def _count_sources(state: ServiceState, kind: str, sources: Mapping[str, int]) -> None:
    """Count one answer of ``kind`` and its items, by source (source -> items)."""
    metrics = state.metrics
    metrics.recommendations.labels(kind).inc()
    for source, count in sources.items():
        metrics.recommended_items.labels(source).inc(count)


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
