"""Business filters: what may never be recommended to a request row.

* seen items (those the history marks seen; which event types count is configured),
* categories to include or exclude,
* unavailable items (the items file's ``available`` column),
* an explicit list of items per request,
* and whatever the caller restricts the ranking to (``allowed``).

Filters are applied before candidates are taken, so every source fills its quota with
items that may be shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reco.data.vocabulary import Vocabulary
from reco.errors import ValidationError
from reco.pipeline.catalog import Catalog
from reco.pipeline.history import Histories

_FIELDS = ("include_categories", "exclude_categories", "exclude_items", "exclude_seen")


@dataclass(frozen=True)
class Filters:
    """One request's filters. Empty tuples mean "no rule"; ``exclude_seen`` None means
    the pipeline's configured default."""

    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    exclude_items: tuple[str, ...] = ()
    exclude_seen: bool | None = None

    @classmethod
    def coerce(cls, value: Filters | Mapping[str, Any] | None) -> Filters:
        """Filters from an instance, a dict (e.g. parsed JSON) or None (no filters)."""
        if value is None:
            return cls()
        if isinstance(value, Filters):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(
                [f"filters must be a dict with keys {list(_FIELDS)}, got {type(value).__name__}"],
                source="filters",
            )
        unknown = sorted(set(value) - set(_FIELDS))
        if unknown:
            raise ValidationError(
                [f"unknown filter keys {unknown}; use {list(_FIELDS)}"], source="filters"
            )
        lists = {}
        for key in ("include_categories", "exclude_categories", "exclude_items"):
            given = value.get(key) or ()
            if isinstance(given, str):
                given = (given,)
            lists[key] = tuple(str(v) for v in given)
        seen = value.get("exclude_seen")
        if seen is not None and not isinstance(seen, bool):
            raise ValidationError(
                [f"filters exclude_seen must be true or false, got {seen!r}"], source="filters"
            )
        return cls(exclude_seen=seen, **lists)


def filters_per_row(
    filters: Filters | Mapping[str, Any] | Sequence[Filters | Mapping[str, Any] | None] | None,
    n_rows: int,
) -> list[Filters]:
    """One :class:`Filters` per row from one shared value or a list of them."""
    if filters is None or isinstance(filters, Filters | Mapping):
        shared = Filters.coerce(filters)  # type: ignore[arg-type]
        return [shared] * n_rows
    if len(filters) != n_rows:
        raise ValidationError(
            [f"filters must be one for all or one per request ({n_rows}), got {len(filters)}"],
            source="filters",
        )
    return [Filters.coerce(f) for f in filters]


def item_mask(catalog: Catalog, filters: Filters) -> np.ndarray:
    """Items a request with ``filters`` may get, by availability and category rules."""
    mask = catalog.available.copy()
    if filters.include_categories:
        mask &= catalog.category_mask(filters.include_categories)
    if filters.exclude_categories:
        mask &= ~catalog.category_mask(filters.exclude_categories)
    return mask


def blocked(
    catalog: Catalog,
    items: Vocabulary | None,
    histories: Histories,
    filters: Sequence[Filters],
    *,
    exclude_seen: bool,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean rows x items matrix: True where an item must not be recommended.

    ``items`` maps the explicit exclude lists' external ids; None when no request
    names items (a list given then is a ValueError).
    """
    n_rows, n_items = histories.n_rows, histories.n_items
    out = np.zeros((n_rows, n_items), dtype=bool)
    masks: dict[Filters, np.ndarray] = {}
    for row, rule in enumerate(filters):
        if rule not in masks:
            mask = item_mask(catalog, rule)
            if allowed is not None:
                mask &= allowed
            masks[rule] = ~mask
        out[row] = masks[rule]
        if rule.exclude_items:
            if items is None:
                raise ValueError("exclude_items needs the item vocabulary to map its ids")
            found = items.lookup(list(rule.exclude_items))
            out[row, found[found >= 0]] = True
    seen_rows = np.array(
        [exclude_seen if rule.exclude_seen is None else rule.exclude_seen for rule in filters],
        dtype=bool,
    )
    seen = histories.seen
    rows = np.repeat(np.arange(n_rows), np.diff(seen.indptr))
    hit = (seen.data > 0) & seen_rows[rows]
    out[rows[hit], seen.indices[hit]] = True
    return out
