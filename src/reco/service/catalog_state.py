"""Which items may not be recommended right now, as the store says.

An item marked ``available = false`` or deleted through the API must vanish from every
answer at once, long before the next training run. :class:`CatalogState` keeps the
set of such item ids, rereads it from the store every ``catalog_refresh_seconds``
(other workers' writes) and applies this worker's own writes immediately. Its
``fingerprint`` changes whenever the set does: it is part of every cache key, so an
answer cached before an item went away is never served again. When answers may hold
new items (items the served model was not trained with, see
:mod:`reco.service.new_items`), their fingerprint is folded in too
(:meth:`CatalogState.set_new_items`), so a cached answer never hides a new item either.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from sqlalchemy import Engine

from reco.service.model_holder import LoadedModel


class CatalogState:
    """The store's unavailable items, refreshed, with a mask per model version."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._new_items = ""
        # How many of this worker's own writes were applied (see refresh).
        self._marks = 0
        # One reference, so readers always see a set and its own fingerprint.
        self._snapshot: tuple[frozenset[str], str] = (frozenset(), _fingerprint(frozenset(), ""))
        self._masks: dict[tuple[str, str], np.ndarray | None] = {}

    @property
    def unavailable(self) -> frozenset[str]:
        """Item ids that are unavailable or deleted."""
        return self._snapshot[0]

    @property
    def fingerprint(self) -> str:
        """A short hash of the unavailable set (and the new items, when folded in);
        changes whenever they do."""
        return self._snapshot[1]

    @property
    def snapshot(self) -> tuple[frozenset[str], str]:
        """The unavailable set and the fingerprint, read together (one reference)."""
        return self._snapshot

    def refresh(self) -> None:
        """Reread the unavailable items from the store."""
        from reco.store.entities import unavailable_items

        marks = self._marks
        self._set(frozenset(unavailable_items(self.engine)), marks)

    def mark(self, item_id: str, *, unavailable: bool) -> None:
        """Apply one of this worker's writes now (the next refresh confirms it)."""
        with self._lock:
            self._marks += 1
            current = self._snapshot[0]
            if (item_id in current) == unavailable:
                return
            self._replace(current | {item_id} if unavailable else current - {item_id})

    def set_new_items(self, fingerprint: str) -> None:
        """Fold the new items' fingerprint into the catalogue's: called when they change."""
        with self._lock:
            if fingerprint != self._new_items:
                self._new_items = fingerprint
                self._replace(self._snapshot[0])

    def _set(self, unavailable: frozenset[str], marks: int) -> None:
        with self._lock:
            # A write of this worker applied while the store was being read may be
            # missing from what was read: keep it, the next refresh confirms it.
            if marks == self._marks and unavailable != self._snapshot[0]:
                self._replace(unavailable)

    def _replace(self, unavailable: frozenset[str]) -> None:
        self._snapshot = (unavailable, _fingerprint(unavailable, self._new_items))
        self._masks = {}

    def allowed(self, model: LoadedModel) -> np.ndarray | None:
        """Boolean mask over the model's items: False where the store says unavailable
        (None when nothing is: no restriction)."""
        unavailable, fingerprint = self._snapshot
        key = (model.version, fingerprint)
        masks = self._masks
        if key in masks:
            return masks[key]
        mask = None
        if unavailable:
            found = model.pipeline.items.lookup(list(unavailable))
            found = found[found >= 0]
            if len(found):
                mask = np.ones(len(model.pipeline.items), dtype=bool)
                mask[found] = False
        with self._lock:
            if self._snapshot[1] == fingerprint:
                self._masks = {key: mask}
        return mask

    def is_available(self, item_id: str) -> bool:
        """False when the store says the item may not be shown."""
        return item_id not in self._snapshot[0]


def _fingerprint(unavailable: frozenset[str], new_items: str) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for item in sorted(unavailable):
        digest.update(item.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    digest.update(b"\x01" + new_items.encode())
    return digest.hexdigest()[:16]
