"""The catalogue's new items: stored items the served model was not trained with.

An item PUT through the API after training is not in the model's item vocabulary, so
no source can propose it until the next retraining. :class:`NewItems` keeps, per
served model version, the store's available, not deleted items that the vocabulary
lacks, with their title and categories and their content vectors (the served
pipeline's fitted content source encodes them, see
:meth:`reco.models.content.ContentRecommender.encode_items`), so the request path can
score them (:mod:`reco.service.new_item_answers`).

How it stays current:

* this worker's own PUT and DELETE apply at once (:meth:`NewItems.put`, :meth:`forget`);
* every ``catalog_refresh_seconds`` it rereads the items whose ``updated_at`` moved
  (other workers' writes) since ``OVERLAP_SECONDS`` before its previous read began,
  so a write committed late or stamped by a slightly slow clock is not missed;
* every ``FULL_SCAN_SECONDS``, and whenever the served version changes (hot reload), it
  scans the ids of every live item again and recomputes the set from scratch. Items
  the new version was trained with are in its vocabulary and leave the set by
  themselves.

Memory is bounded: at most ``MAX_NEW_ITEMS`` items, the most recently updated.
Readers take one immutable :class:`NewItemsView` reference and never lock.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, issparse
from scipy.sparse import vstack as sparse_vstack
from sqlalchemy import Engine, select, true

from reco.data import schema
from reco.data.vocabulary import Vocabulary
from reco.errors import RecoError
from reco.service.model_holder import LoadedModel

log = logging.getLogger(__name__)

# Most new items kept (the most recently updated): bounds memory and per-request work.
MAX_NEW_ITEMS = 5_000
# How far back each incremental reread goes before the newest ``updated_at`` seen.
OVERLAP_SECONDS = 30.0
# How often the whole set is recomputed from every live item id.
FULL_SCAN_SECONDS = 60.0
# Rows fetched per round trip when scanning every item id.
SCAN_CHUNK = 10_000
# Ids per ``IN (...)`` lookup.
LOOKUP_CHUNK = 500
# How long one worker reuses the online trending counts of the new items.
TRENDING_SECONDS = 1.0
CONTENT_SOURCE = "content"


@dataclass(frozen=True)
class NewItem:
    """One stored item the served model does not know."""

    item_id: str
    title: str | None
    text: str | None
    categories: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True, eq=False)
class NewItemsView:
    """The new items of one model version as arrays, for vectorised scoring.

    Row ``k`` of every array is item ``ids[k]``. ``vectors`` are content vectors
    comparable with the version's content source (None without one); ``categories``
    a binary items x ``category_names`` matrix.
    """

    version: str
    ids: np.ndarray
    vocabulary: Vocabulary
    titles: np.ndarray
    categories: csr_matrix
    category_names: dict[str, int]
    vectors: csr_matrix | np.ndarray | None
    fingerprint: str
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of ``item_ids`` (-1 for ids that are not new items)."""
        if len(item_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.vocabulary.lookup(item_ids)

    def category_mask(self, names: Sequence[str]) -> np.ndarray:
        """New items in any of the named categories (exact names, as the pipeline's)."""
        columns = [self.category_names[name] for name in names if name in self.category_names]
        if not columns:
            return np.zeros(len(self), dtype=bool)
        return np.asarray(self.categories[:, columns].sum(axis=1)).ravel() > 0

    def available(self, unavailable: frozenset[str], key: str) -> np.ndarray:
        """False for items in ``unavailable`` (the catalogue state's set, ``key`` its
        fingerprint: the mask is computed once per change)."""
        cached = self._cache.get("available")
        if cached is not None and cached[0] == key:
            return cached[1]
        mask = np.ones(len(self), dtype=bool)
        if unavailable:
            found = self.lookup(list(unavailable))
            mask[found[found >= 0]] = False
        self._cache["available"] = (key, mask)
        return mask

    def trending(self, features: Any) -> np.ndarray:
        """Online decayed counts of the new items (0 where none), reused for
        ``TRENDING_SECONDS``; zeros while the online features cannot be read."""
        now = time.monotonic()
        cached = self._cache.get("trending")
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            counts = np.asarray(features.trending_scores(list(self.ids)), dtype=np.float64)
        except Exception as exc:  # Redis down: answers go on without trending
            log.warning("online trending of new items unreadable (%s)", exc)
            counts = np.zeros(len(self))
        self._cache["trending"] = (now + TRENDING_SECONDS, counts)
        return counts


class NewItems:
    """Tracks the store's items that the served model version lacks (see the module doc).

    ``current`` gives the served model (read under the lock, so a refresh racing a
    hot reload always ends on the version being served). ``on_change`` is called with
    the new fingerprint whenever the set or an item in it changes (the catalogue state
    folds it into the cache keys).
    """

    def __init__(
        self,
        engine: Engine,
        current: Callable[[], LoadedModel | None],
        *,
        on_change: Callable[[str], None] | None = None,
        limit: int = MAX_NEW_ITEMS,
    ) -> None:
        self.engine = engine
        self._current = current
        self.limit = limit
        self._on_change = on_change
        self._lock = threading.Lock()
        self._version: str | None = None
        self._records: dict[str, NewItem] = {}
        # item id -> (updated_at it was encoded at, its content vector) for _version.
        self._vectors: dict[str, tuple[datetime, Any]] = {}
        self._since: datetime | None = None
        self._full_scan_at = -np.inf
        self._view: NewItemsView | None = None
        self._fingerprint = _fingerprint({})

    # -- readers ---------------------------------------------------------------------

    def view(self, model: LoadedModel) -> NewItemsView | None:
        """The new items for ``model`` (None when there are none, or the set for its
        version is not computed yet: only during a hot reload)."""
        view = self._view
        if view is None or view.version != model.version:
            return None
        return view

    @property
    def fingerprint(self) -> str:
        """A short hash of the new items and their update times."""
        return self._fingerprint

    # -- writers ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Reread the store for the served model: the items changed lately, or all of
        them when the version changed or ``FULL_SCAN_SECONDS`` passed."""
        with self._lock:
            model = self._current()
            if model is None:
                self._reset(None)
            elif (
                model.version != self._version
                or time.monotonic() - self._full_scan_at > FULL_SCAN_SECONDS
            ):
                self._full_scan(model)
            else:
                self._reread_changed(model)
            self._publish(model)

    def put(self, item: Mapping[str, Any], model: LoadedModel | None) -> None:
        """Apply this worker's PUT of ``item`` (as the store returned it) now."""
        if model is None or item["item_id"] in model.pipeline.items:
            return
        with self._lock:
            if model.version != self._version:
                return  # a reload is rebuilding the set from the store, this write included
            record = _record(item)
            if item.get("available", True):
                self._records[record.item_id] = record
                self._drop_oldest()
            else:
                self._records.pop(record.item_id, None)
            self._publish(model)

    def forget(self, item_id: str, model: LoadedModel | None) -> None:
        """Apply this worker's DELETE of ``item_id`` now."""
        with self._lock:
            if model is not None and self._records.pop(item_id, None) is not None:
                self._publish(model)

    # -- store reading (under the lock) ------------------------------------------------

    def _reset(self, version: str | None) -> None:
        self._version = version
        self._records = {}
        self._vectors = {}
        self._since = None

    def _full_scan(self, model: LoadedModel) -> None:
        """Recompute the set from the ids of every live, available item."""
        started = datetime.now(UTC)
        vocabulary = model.pipeline.items
        newest: list[tuple[datetime, str]] = []  # a min-heap of the most recent ones
        missing = 0
        for chunk in _live_items(self.engine):
            ids = [row.item_id for row in chunk]
            stamps = [_aware(row.updated_at) for row in chunk]
            for k in np.flatnonzero(vocabulary.lookup(ids) < 0):
                missing += 1
                entry = (stamps[k], ids[k])
                if len(newest) < self.limit:
                    heapq.heappush(newest, entry)
                elif entry > newest[0]:
                    heapq.heapreplace(newest, entry)
        if missing > self.limit:
            log.warning(
                "%d stored items are unknown to model version %s; the %d most recently "
                "updated are served as new items (retrain to serve them all)",
                missing,
                model.version,
                self.limit,
            )
        if model.version != self._version:
            self._reset(model.version)
        self._records = {r.item_id: r for r in _items_by_id(self.engine, [i for _, i in newest])}
        self._since = started
        self._full_scan_at = time.monotonic()

    def _reread_changed(self, model: LoadedModel) -> None:
        """Apply the rows whose ``updated_at`` moved since the last read."""
        started = datetime.now(UTC)
        since = None if self._since is None else self._since - timedelta(seconds=OVERLAP_SECONDS)
        changed = _ids_updated_since(self.engine, since)
        # The next read goes back from when this one began, not from the newest row's
        # stamp: after a bulk ingest every row carries about the same stamp, and going
        # back from it would reread the whole catalogue on every refresh.
        self._since = started
        if not changed:
            return
        # Only ids first: after a catalogue update most changed rows are items the model
        # knows, and reading their text every second for the overlap cost a worker ~10%.
        found = model.pipeline.items.lookup(changed)
        unknown = [i for i, k in zip(changed, found, strict=True) if k < 0]
        for row in _item_rows(self.engine, unknown):
            if row["available"] and row["deleted_at"] is None:
                self._records[row["item_id"]] = _record(row)
            else:
                self._records.pop(row["item_id"], None)
        self._drop_oldest()

    def _drop_oldest(self) -> None:
        if len(self._records) > self.limit:
            keep = heapq.nlargest(
                self.limit, self._records.values(), key=lambda r: (r.updated_at, r.item_id)
            )
            self._records = {r.item_id: r for r in keep}

    # -- publishing ------------------------------------------------------------------

    def _publish(self, model: LoadedModel | None) -> None:
        """Encode what changed and swap in a new view when the set or the version did."""
        fingerprint = _fingerprint(self._records)
        view = self._view
        if model is None or not self._records:
            self._view = None
        elif view is None or view.version != model.version or view.fingerprint != fingerprint:
            self._encode(model)
            self._view = _build_view(model, self._records, self._vectors, fingerprint)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            if self._on_change is not None:
                self._on_change(fingerprint)

    def _encode(self, model: LoadedModel) -> None:
        """Content vectors for the records not encoded at their current update time."""
        self._vectors = {k: v for k, v in self._vectors.items() if k in self._records}
        content = model.pipeline.sources.get(CONTENT_SOURCE)
        if content is None or not hasattr(content, "encode_items"):
            return
        stale = [
            r
            for r in self._records.values()
            if r.item_id not in self._vectors or self._vectors[r.item_id][0] != r.updated_at
        ]
        if not stale:
            return
        try:
            vectors = content.encode_items(_frame(stale))
        except RecoError:
            # E.g. the sentence model cannot be loaded: the items can still trend.
            log.exception("cannot encode %d new items; they are served without content", len(stale))
            return
        for k, record in enumerate(stale):
            self._vectors[record.item_id] = (record.updated_at, vectors[k])


# -- building a view ------------------------------------------------------------------


def _build_view(
    model: LoadedModel,
    records: Mapping[str, NewItem],
    vectors: Mapping[str, tuple[datetime, Any]],
    fingerprint: str,
) -> NewItemsView:
    ids = sorted(records)
    names = sorted({c for r in records.values() for c in r.categories})
    columns = {name: k for k, name in enumerate(names)}
    rows = [k for k, item_id in enumerate(ids) for _ in records[item_id].categories]
    cols = [columns[c] for item_id in ids for c in records[item_id].categories]
    categories = csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(ids), len(names))
    )
    return NewItemsView(
        version=model.version,
        ids=np.asarray(ids, dtype=object),
        vocabulary=Vocabulary(ids),
        titles=np.asarray([records[i].title or i for i in ids], dtype=object),
        categories=categories,
        category_names=columns,
        vectors=_stack(model, ids, vectors),
        fingerprint=fingerprint,
    )


def _stack(
    model: LoadedModel, ids: list[str], vectors: Mapping[str, tuple[datetime, Any]]
) -> csr_matrix | np.ndarray | None:
    """One content vector per id (all-zero where an item could not be encoded)."""
    content = model.pipeline.sources.get(CONTENT_SOURCE)
    fitted = getattr(content, "item_vectors_", None)
    if fitted is None or not vectors:
        return None
    width = fitted.shape[1]
    if issparse(fitted):
        empty = csr_matrix((1, width), dtype=np.float32)
        return csr_matrix(
            sparse_vstack([vectors[i][1] if i in vectors else empty for i in ids], format="csr"),
            dtype=np.float32,
        )
    empty = np.zeros(width, dtype=np.float32)
    return np.vstack([vectors[i][1] if i in vectors else empty for i in ids]).astype(np.float32)


def encode_one(model: LoadedModel, item: Mapping[str, Any]) -> csr_matrix | np.ndarray | None:
    """The content vector (one row) of a stored item, or None without a content source."""
    content = model.pipeline.sources.get(CONTENT_SOURCE)
    if content is None or not hasattr(content, "encode_items"):
        return None
    return content.encode_items(_frame([_record(item)]))


def _frame(records: Sequence[NewItem]) -> pd.DataFrame:
    """Items as the content model reads them (categories ``|``-joined, as stored)."""
    return pd.DataFrame(
        {
            "title": [r.title for r in records],
            "text": [r.text for r in records],
            "categories": [schema.CATEGORY_SEPARATOR.join(r.categories) for r in records],
        }
    )


def _record(item: Mapping[str, Any]) -> NewItem:
    categories = item.get("categories") or ()
    if isinstance(categories, str):
        categories = [c for c in categories.split(schema.CATEGORY_SEPARATOR) if c]
    return NewItem(
        item_id=str(item["item_id"]),
        title=item.get("title"),
        text=item.get("text"),
        categories=tuple(dict.fromkeys(str(c) for c in categories)),
        updated_at=_aware(item["updated_at"]),
    )


def _fingerprint(records: Mapping[str, NewItem]) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for item_id in sorted(records):
        digest.update(item_id.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00" + records[item_id].updated_at.isoformat().encode() + b"\x00")
    return digest.hexdigest()[:16]


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; the store writes UTC.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- store queries ----------------------------------------------------------------------


def _live_items(engine: Engine) -> Iterator[Sequence[Any]]:
    """(item_id, updated_at) of every available, not deleted item, in chunks."""
    from reco.store.tables import items

    query = select(items.c.item_id, items.c.updated_at).where(
        items.c.deleted_at.is_(None), items.c.available == true()
    )
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=SCAN_CHUNK).execute(query)
        yield from result.partitions()


def _item_columns() -> list[Any]:
    from reco.store.tables import items

    return [
        items.c.item_id,
        items.c.title,
        items.c.text,
        items.c.categories,
        items.c.available,
        items.c.deleted_at,
        items.c.updated_at,
    ]


def _row_dict(row: Any) -> dict[str, Any]:
    found = dict(row._mapping)
    found["updated_at"] = _aware(found["updated_at"])
    return found


def _items_by_id(engine: Engine, item_ids: Sequence[str]) -> list[NewItem]:
    """The live, available ones among ``item_ids``."""
    from reco.store.tables import items

    out: list[NewItem] = []
    with engine.connect() as connection:
        for start in range(0, len(item_ids), LOOKUP_CHUNK):
            chunk = list(item_ids[start : start + LOOKUP_CHUNK])
            query = select(*_item_columns()).where(
                items.c.item_id.in_(chunk),
                items.c.deleted_at.is_(None),
                items.c.available == true(),
            )
            out += [_record(_row_dict(row)) for row in connection.execute(query)]
    return out


def _ids_updated_since(engine: Engine, since: datetime | None) -> list[str]:
    """The ids of every item row (deleted and unavailable ones too) updated at or
    after ``since`` (every id when None)."""
    from reco.store.tables import items

    query = select(items.c.item_id)
    if since is not None:
        query = query.where(items.c.updated_at >= since)
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def _item_rows(engine: Engine, item_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The stored rows of ``item_ids`` (deleted and unavailable ones too)."""
    from reco.store.tables import items

    out: list[dict[str, Any]] = []
    if not item_ids:
        return out
    with engine.connect() as connection:
        for start in range(0, len(item_ids), LOOKUP_CHUNK):
            chunk = list(item_ids[start : start + LOOKUP_CHUNK])
            query = select(*_item_columns()).where(items.c.item_id.in_(chunk))
            out += [_row_dict(row) for row in connection.execute(query)]
    return out
