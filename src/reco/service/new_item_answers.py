"""New items in answers: the request side of :mod:`reco.service.new_items`.

* :func:`with_new_items`: ``new_items_share`` of a user's answer (slots below the top
  three, as the pipeline's exploration places them) goes to the new items with the
  best signal for them, alternating between the two signals there are: the cosine of
  the item's content vector to the user's history profile (scored the way the content
  source scores catalogue items) and the item's online trending count. A slot with no
  new item that has a signal keeps its ranked item. Every filter of the request holds:
  availability, categories, the exclude list (with the user's dislikes), and the new
  items the user already consumed.
* :func:`with_new_neighbours`: the same share of a known item's similar items goes to
  the new items closest to it in content.
* :func:`similar_to_new_item`: the similar items of a new item, by content, among
  known and new items.

The user's events on new items never reach the model's history rows (those only have
columns for the model's vocabulary): the caller passes the row's events since the
model's snapshot (a user's, a session's history) so the answer can leave out the new
items among them. Work per request
is a few vectorised operations over the new items (no loop over them), and a single
attribute check when there are none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import issparse

from reco.errors import RecoError
from reco.pipeline.diversity import exploration_slots
from reco.pipeline.explain import trending_reason
from reco.pipeline.filters import Filters
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import Pipeline, Recommendation, UnknownItemError
from reco.pipeline.sources import TRENDING_SOURCE
from reco.service.model_holder import LoadedModel
from reco.service.new_items import CONTENT_SOURCE, NewItemsView, encode_one
from reco.service.state import ServiceState

NEW_ITEM_SOURCE = "new_item"
SIMILAR_REASON = "new: similar to {title}"
SIMILAR_TASTE_REASON = "new: similar to items you liked"

# -- a user's answer --------------------------------------------------------------------


def with_new_items(
    state: ServiceState,
    model: LoadedModel,
    pipeline: Pipeline,
    histories: Histories,
    filters: Filters,
    n: int,
    found: list[Recommendation],
    events: pd.DataFrame | None,
) -> list[Recommendation]:
    """``found`` (one row's answer) with the new-items share of its slots given to the
    best new items for that row; ``found`` itself when there is nothing to give.
    ``events``: the row's events since the model's snapshot (None: none)."""
    share = state.settings.service.new_items_share
    tracker = state.new_items
    if share <= 0 or tracker is None:
        return found
    view = tracker.view(model)
    if view is None:
        return found
    slots = exploration_slots(n, share)
    if len(slots) == 0:
        return found
    allowed = _allowed(state, pipeline, view, filters, events)
    picks = _best_for_row(state, pipeline, view, histories, allowed, len(slots))
    if not picks:
        return found
    return _insert(found, picks, slots, n)


def _allowed(
    state: ServiceState,
    pipeline: Pipeline,
    view: NewItemsView,
    filters: Filters,
    events: pd.DataFrame | None,
) -> np.ndarray:
    """New items the request may get: available, in its categories, not excluded, not
    consumed in ``events`` (when seen items are excluded)."""
    ok = _available(state, view).copy()
    if filters.include_categories:
        ok &= view.category_mask(filters.include_categories)
    if filters.exclude_categories:
        ok &= ~view.category_mask(filters.exclude_categories)
    _block(ok, view, filters.exclude_items)
    exclude_seen = filters.exclude_seen
    if exclude_seen is None:
        exclude_seen = pipeline.config.exclude_seen
    if exclude_seen:
        _block(ok, view, _consumed(pipeline, events))
    return ok


def _available(state: ServiceState, view: NewItemsView) -> np.ndarray:
    """New items the catalogue state does not mark unavailable (a refresh may have
    heard of another worker's write before the new items' own refresh)."""
    unavailable, fingerprint = state.catalog.snapshot
    return view.available(unavailable, fingerprint)


def _block(ok: np.ndarray, view: NewItemsView, item_ids: Sequence[str]) -> None:
    found = view.lookup(item_ids)
    ok[found[found >= 0]] = False


def _consumed(pipeline: Pipeline, frame: pd.DataFrame | None) -> np.ndarray:
    """Ids of the items consumed in ``frame`` (events of the types that count as seen)."""
    if frame is None or len(frame) == 0:
        return np.zeros(0, dtype=object)
    items = frame["item_id"].to_numpy(dtype=object)
    seen_types = pipeline.config.seen_event_types
    if seen_types is not None:
        items = items[np.isin(frame["event_type"].to_numpy(dtype=object), seen_types)]
    return items


def _best_for_row(
    state: ServiceState,
    pipeline: Pipeline,
    view: NewItemsView,
    histories: Histories,
    allowed: np.ndarray,
    k: int,
) -> list[Recommendation]:
    """Up to ``k`` new items, alternately the most similar to the history in content
    and the most trending, each with its reason."""
    similar = _content_scores(pipeline, view, histories)
    trending = _trending(state, view)
    by_content = _ranked(np.where(allowed, similar, np.nan), k)
    by_trend = _ranked(np.where(allowed, trending, np.nan), k)
    picks: dict[int, str] = {}  # row -> which signal chose it, in pick order
    for pair in zip(*(_padded(by_content, k), _padded(by_trend, k)), strict=True):
        for row, signal in zip(pair, ("content", TRENDING_SOURCE), strict=True):
            if row >= 0 and row not in picks and len(picks) < k:
                picks[row] = signal
    rows = np.fromiter(picks, dtype=np.int64, count=len(picks))
    reasons = _reasons(pipeline, view, histories, rows, list(picks.values()))
    scores = np.where(np.isnan(similar[rows]), 0.0, similar[rows])
    return [
        Recommendation(str(view.ids[r]), float(s), NEW_ITEM_SOURCE, reason)
        for r, s, reason in zip(rows, scores, reasons, strict=True)
    ]


def _content_scores(pipeline: Pipeline, view: NewItemsView, histories: Histories) -> np.ndarray:
    """Cosine of each new item to the row's content profile (NaN: no content signal)."""
    content = pipeline.sources.get(CONTENT_SOURCE)
    if content is None or view.vectors is None or histories.lengths()[0] == 0:
        return np.full(len(view), np.nan, dtype=np.float32)
    return content.score_vectors(histories.matrix, view.vectors)[0]


def _trending(state: ServiceState, view: NewItemsView) -> np.ndarray:
    runtime = None if state.online is None else state.online.runtime
    if runtime is None:
        return np.zeros(len(view))
    return view.trending(runtime.features)


def _ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best positive scores, best first (ties by row)."""
    positive = np.flatnonzero(scores > 0)  # NaN compares False: no signal, no slot
    order = np.lexsort((positive, -scores[positive]))
    return positive[order[:k]]


def _padded(rows: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([rows, np.full(k - len(rows), -1, dtype=np.int64)])


def _reasons(
    pipeline: Pipeline,
    view: NewItemsView,
    histories: Histories,
    rows: np.ndarray,
    signals: list[str],
) -> list[str]:
    """ "new: similar to <the history item that contributes most>" or "new: trending"."""
    trending = "new: " + trending_reason(pipeline.sources.get(TRENDING_SOURCE))
    titles = _closest_history_titles(pipeline, view, histories, rows)
    return [
        trending
        if signal == TRENDING_SOURCE
        else (SIMILAR_REASON.format(title=title) if title else SIMILAR_TASTE_REASON)
        for signal, title in zip(signals, titles, strict=True)
    ]


def _closest_history_titles(
    pipeline: Pipeline, view: NewItemsView, histories: Histories, rows: np.ndarray
) -> list[str | None]:
    """Per new item, the title of the history item whose weighted content cosine to
    it is the largest (None when no history item has a positive one)."""
    content = pipeline.sources.get(CONTENT_SOURCE)
    history = histories.matrix[0]
    if content is None or view.vectors is None or history.nnz == 0 or len(rows) == 0:
        return [None] * len(rows)
    cosines = _dense(content.item_vectors_[history.indices] @ view.vectors[rows].T)
    # A disliked history item (negative weight) explains nothing.
    contributions = np.maximum(history.data, 0.0)[:, None] * cosines
    best = np.argmax(contributions, axis=0)
    titles = pipeline.catalog.titles[history.indices[best]]
    found = contributions[best, np.arange(len(rows))] > 0
    return [str(t) if ok else None for t, ok in zip(titles, found, strict=True)]


def _insert(
    found: list[Recommendation], picks: list[Recommendation], slots: np.ndarray, n: int
) -> list[Recommendation]:
    """``found`` with ``picks`` at ``slots`` (the ranked items move down, the last drop
    out); where the list is short, picks fill it. An inserted item takes the score of
    the item above it, so scores stay non-increasing down the list."""
    ranked = list(found)
    waiting = list(picks)
    positions = set(slots[: len(picks)].tolist())
    out: list[Recommendation] = []
    for position in range(n):
        if waiting and (position in positions or not ranked):
            pick = waiting.pop(0)
            score = out[-1].score if out else pick.score
            out.append(Recommendation(pick.item_id, score, pick.source, pick.explanation))
        elif ranked:
            out.append(ranked.pop(0))
    return out


# -- similar items ------------------------------------------------------------------------


def with_new_neighbours(
    state: ServiceState, model: LoadedModel, item: int, found: list[Recommendation], n: int
) -> list[Recommendation]:
    """A known item's similar items with the new-items share of the slots given to the
    new items closest to it in content."""
    share = state.settings.service.new_items_share
    tracker = state.new_items
    view = None if tracker is None or share <= 0 else tracker.view(model)
    content = model.pipeline.sources.get(CONTENT_SOURCE)
    if view is None or view.vectors is None or content is None:
        return found
    slots = exploration_slots(n, share)
    if len(slots) == 0:
        return found
    vector = content.item_vectors_[item]
    cosines = _dense(view.vectors @ vector.T).ravel().astype(np.float32)
    rows = _ranked(np.where(_available(state, view), cosines, np.nan), len(slots))
    title = model.pipeline.catalog.titles[item]
    picks = [
        Recommendation(
            str(view.ids[r]), float(cosines[r]), NEW_ITEM_SOURCE, f"new: similar to {title}"
        )
        for r in rows
    ]
    return _insert(found, picks, slots, n) if picks else found


def similar_to_new_item(
    state: ServiceState, model: LoadedModel, item_id: str, n: int
) -> list[Recommendation]:
    """The ``n`` items, known or new, most like the new item ``item_id`` in content.

    UnknownItemError (404) when the store does not have the item either. An item the
    refresh has not reached yet, or that is unavailable, is read from the store and
    encoded here. Empty when nothing can relate it (no content source, no content).
    """
    pipeline = model.pipeline
    tracker = state.new_items
    view = None if tracker is None else tracker.view(model)
    row = -1 if view is None else int(view.lookup([item_id])[0])
    if view is None or row < 0:
        vector, title = _stored_vector(state, model, item_id)
    elif view.vectors is None:
        return []  # no content source: nothing relates a new item to others
    else:
        vector, title = view.vectors[row], str(view.titles[row])
    content = pipeline.sources.get(CONTENT_SOURCE)
    if vector is None or content is None or not _dense(vector).any():
        return []
    scores = _dense(content.item_vectors_ @ vector.T).ravel().astype(np.float32)
    scores[~_known_allowed(state, model, content)] = np.nan
    ids = pipeline.items.ids
    n_known = len(ids)
    if view is not None and view.vectors is not None:
        others = _dense(view.vectors @ vector.T).ravel().astype(np.float32)
        others[~_available(state, view)] = np.nan
        if row >= 0:
            others[row] = np.nan  # not its own neighbour
        scores = np.concatenate([scores, others])
        ids = np.concatenate([ids, view.ids])
    reason = f"similar in content to {title}"
    return [
        Recommendation(
            str(ids[k]), float(scores[k]), NEW_ITEM_SOURCE if k >= n_known else "content", reason
        )
        for k in _ranked(scores, n)
    ]


def _stored_vector(state: ServiceState, model: LoadedModel, item_id: str) -> tuple[Any, str]:
    """The content vector and title of a stored item; UnknownItemError when absent."""
    from reco.store.entities import get_item

    stored = get_item(state.engine, item_id)
    if stored is None:
        raise UnknownItemError(
            f"there is no item {item_id[:100]!r}: the served model was not trained with it "
            "and the store does not have it (never stored, or deleted); create it with "
            "PUT /v1/items/{item_id}"
        )
    try:
        vector = encode_one(model, stored)
    except RecoError:
        vector = None  # e.g. the sentence model cannot be loaded: nothing relates it
    return vector, stored.get("title") or item_id


def _known_allowed(state: ServiceState, model: LoadedModel, content: Any) -> np.ndarray:
    """Known items a similar-items answer may show: with content, available."""
    ok = np.asarray(content.has_content_, dtype=bool) & model.pipeline.catalog.available
    mask = state.catalog.allowed(model)
    return ok if mask is None else ok & mask


def _dense(values: Any) -> np.ndarray:
    return values.toarray() if issparse(values) else np.asarray(values)
