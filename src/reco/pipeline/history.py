"""Histories: what each request row knows about its user, as of request time.

A :class:`Histories` batch holds, per row, the user's weighted item vector (what every
model scores from), when each item was last touched, the order of recency (which
items are the user's latest: the strongest signal of what comes next), and which
items count as seen (never recommended again). It is built from interaction events,
so the training data, the store and events that arrived a second ago all become
rows the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.dataset import Dataset
from reco.data.vocabulary import Vocabulary

HISTORY_ARRAYS = ("indptr", "indices", "weights", "times", "recency", "seen", "users")


@dataclass(frozen=True, eq=False)
class Histories:
    """A batch of history rows over one item vocabulary.

    ``matrix``, ``times``, ``recency`` and ``seen`` share one CSR structure (sorted
    indices): the summed weight of each (row, item), its latest time (epoch seconds,
    NaN unknown), its recency rank (0 = the row's most recent item; ties in time keep
    event order) and 1 where the item counts as seen. ``users`` holds each row's
    training user index (-1 for a user the models never saw). ``timed`` is False
    when no event had a timestamp: recency then only reflects the order events came in.
    """

    matrix: csr_matrix
    times: csr_matrix
    recency: csr_matrix
    seen: csr_matrix
    users: np.ndarray
    timed: bool

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_events(
        cls,
        n_rows: int,
        n_items: int,
        rows: np.ndarray,
        items: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        times: np.ndarray | None = None,
        seen: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> Histories:
        """Aggregate events (``rows[k]`` touched ``items[k]``) into history rows.

        Events are given oldest first where their times tie or are unknown. Weights
        default to 1, ``seen`` (a boolean per event) to True, ``users`` to -1.
        Events with a row or item index of -1 are ignored.
        """
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        n = len(rows)
        weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        times = np.full(n, np.nan) if times is None else np.asarray(times, dtype=np.float64)
        seen = np.ones(n, dtype=bool) if seen is None else np.asarray(seen, dtype=bool)
        if not len(weights) == len(times) == len(seen) == len(items) == n:
            raise ValueError("rows, items, weights, times and seen must have one entry per event")
        keep = (rows >= 0) & (items >= 0)
        if (rows[keep] >= n_rows).any() or (items[keep] >= n_items).any():
            raise ValueError(f"event indices outside {n_rows} rows x {n_items} items")
        rows, items, weights = rows[keep], items[keep], weights[keep]
        times, seen = times[keep], seen[keep]
        timed = bool(len(times)) and not np.isnan(times).all()

        # Chronological order inside each row: time (unknown first), then event order.
        sortable = np.where(np.isnan(times), -np.inf, times)
        chrono = np.lexsort((np.arange(len(rows)), sortable, rows))
        sequence = np.empty(len(rows), dtype=np.int64)
        sequence[chrono] = np.arange(len(rows))

        keys = rows * n_items + items
        by_key = np.lexsort((sequence, keys))
        sorted_keys = keys[by_key]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        starts = starts[: len(sorted_keys)]  # no events: no entries
        ends = (np.r_[starts[1:], len(sorted_keys)] - 1)[: len(starts)]
        unique_keys = sorted_keys[starts]
        entry_rows = unique_keys // n_items
        entry_items = unique_keys % n_items
        entry_weights = np.add.reduceat(weights[by_key], starts) if len(starts) else weights[:0]
        entry_seen = np.logical_or.reduceat(seen[by_key], starts) if len(starts) else seen[:0]
        last = by_key[ends]  # the latest event of each (row, item)
        entry_times = times[last]
        entry_sequence = sequence[last]

        # Recency rank within each row: 0 for the latest entry.
        order = np.lexsort((-entry_sequence, entry_rows))
        row_starts = np.searchsorted(entry_rows[order], entry_rows[order], side="left")
        recency = np.empty(len(order), dtype=np.float32)
        recency[order] = np.arange(len(order)) - row_starts

        indptr = np.r_[0, np.cumsum(np.bincount(entry_rows, minlength=n_rows))].astype(np.int64)
        shape = (n_rows, n_items)

        def csr(values: np.ndarray) -> csr_matrix:
            return csr_matrix((values, entry_items, indptr), shape=shape)

        return cls(
            matrix=csr(entry_weights.astype(np.float32)),
            times=csr(entry_times.astype(np.float64)),
            recency=csr(recency),
            seen=csr(entry_seen.astype(np.float32)),
            users=_users(users, n_rows),
            timed=timed,
        )

    @classmethod
    def from_dataset(
        cls,
        data: Dataset,
        users: np.ndarray,
        *,
        seen_event_types: Sequence[str] | None = None,
    ) -> Histories:
        """History rows of the given training user indices from ``data``.

        ``seen_event_types`` names the event types that make an item seen (None:
        every type).
        """
        users = np.asarray(users, dtype=np.int64)
        row_of = np.full(data.n_users, -1, dtype=np.int64)
        row_of[users] = np.arange(len(users))
        rows = row_of[data.user_idx]
        mask = rows >= 0
        seen = _seen_mask(data.event_types[mask], seen_event_types)
        return cls.from_events(
            len(users),
            data.n_items,
            rows[mask],
            data.item_idx[mask],
            weights=data.weights[mask],
            times=data.timestamps[mask],
            seen=seen,
            users=users,
        )

    @classmethod
    def from_frame(
        cls,
        items: Vocabulary,
        user_ids: Sequence[str],
        interactions: pd.DataFrame,
        *,
        users: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        seen_event_types: Sequence[str] | None = None,
    ) -> Histories:
        """History rows for ``user_ids`` from a canonical interaction frame.

        Interactions of other users and of items outside ``items`` are left out.
        """
        row_lookup = Vocabulary(pd.unique(np.asarray(user_ids, dtype=object)))
        if len(row_lookup) != len(user_ids):
            raise ValueError("user_ids must not repeat; ask once per user")
        rows = row_lookup.lookup(interactions[schema.USER].to_numpy())
        cols = items.lookup(interactions[schema.ITEM].to_numpy())
        times = None
        if schema.TIMESTAMP in interactions:
            times = interactions[schema.TIMESTAMP].astype("float64").to_numpy(na_value=np.nan)
        event_types = (
            interactions[schema.EVENT_TYPE].to_numpy(dtype=object)
            if schema.EVENT_TYPE in interactions
            else np.full(len(interactions), schema.DEFAULT_EVENT_TYPE, dtype=object)
        )
        return cls.from_events(
            len(row_lookup),
            len(items),
            rows,
            cols,
            weights=weights,
            times=times,
            seen=_seen_mask(event_types, seen_event_types),
            users=users,
        )

    @classmethod
    def empty(cls, n_rows: int, n_items: int, users: np.ndarray | None = None) -> Histories:
        """Rows with no history at all (cold users)."""
        none = np.zeros(0, dtype=np.int64)
        return cls.from_events(n_rows, n_items, none, none, users=users)

    @classmethod
    def stack(cls, parts: Sequence[Histories]) -> Histories:
        """The rows of ``parts`` one after another (all over the same items)."""
        if not parts:
            raise ValueError("stack needs at least one batch of rows")
        if len(parts) == 1:
            return parts[0]
        n_items = parts[0].n_items
        if any(part.n_items != n_items for part in parts):
            raise ValueError("stacked histories must share one item vocabulary")
        indices, indptr, shape = _stacked_structure([part.matrix for part in parts])

        def joined(name: str) -> csr_matrix:
            data = np.concatenate([getattr(part, name).data for part in parts])
            return _csr(data, indices, indptr, shape)

        return cls(
            matrix=joined("matrix"),
            times=joined("times"),
            recency=joined("recency"),
            seen=joined("seen"),
            users=np.concatenate([part.users for part in parts]),
            timed=any(part.timed for part in parts),
        )

    # -- views -----------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Number of rows (requests)."""
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        """Number of item columns."""
        return self.matrix.shape[1]

    def lengths(self) -> np.ndarray:
        """Distinct items per row."""
        return np.diff(self.matrix.indptr)

    def last_times(self) -> np.ndarray:
        """Each row's latest event time (epoch seconds), NaN when unknown or empty."""
        out = np.full(self.n_rows, np.nan)
        filled = self.lengths() > 0
        if filled.any() and self.times.nnz:
            data = np.where(np.isnan(self.times.data), -np.inf, self.times.data)
            starts = self.times.indptr[:-1][filled]
            maxima = np.maximum.reduceat(data, starts)
            out[filled] = np.where(np.isinf(maxima), np.nan, maxima)
        return out

    def recent(self, k: int) -> csr_matrix:
        """The matrix restricted to each row's ``k`` most recent items."""
        return self.recent_stack([k])

    def recent_stack(self, lengths: Sequence[int]) -> csr_matrix:
        """:meth:`recent` of each of ``lengths``, one under the other (row ``j`` of the
        ``k``-th block is row ``j`` restricted to its ``lengths[k]`` latest items): a
        model scores every suffix in one call instead of one call each."""
        matrix = self.matrix
        # Entries of zero weight are left out, as scipy's eliminate_zeros would.
        nonzero = matrix.data != 0
        # One mask per length over the stored entries; blocks follow each other, and
        # inside a block the entries keep their row-major, sorted-column order.
        keep = np.concatenate([(self.recency.data < k) & nonzero for k in lengths])
        entry_rows = np.repeat(np.arange(self.n_rows), np.diff(matrix.indptr))
        block_rows = (np.arange(len(lengths))[:, None] * self.n_rows + entry_rows).ravel()
        counts = np.bincount(block_rows[keep], minlength=self.n_rows * len(lengths))
        indptr = np.r_[0, np.cumsum(counts)].astype(matrix.indptr.dtype)
        data = np.tile(matrix.data, len(lengths))[keep]
        indices = np.tile(matrix.indices, len(lengths))[keep]
        return _csr(data, indices, indptr, (self.n_rows * len(lengths), self.n_items))

    def take(self, rows: np.ndarray) -> Histories:
        """The given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == self.n_rows and (rows == np.arange(self.n_rows)).all():
            return self  # every row in order (a lone request's block): nothing to copy
        # One gather of the shared structure for all four matrices: scipy's row
        # indexing would redo it (and its checks) per matrix, a large share of
        # scoring one request.
        indptr = self.matrix.indptr
        _, gather = row_entries(indptr, rows)
        new_indptr = np.r_[0, np.cumsum(indptr[rows + 1] - indptr[rows])].astype(indptr.dtype)
        shape = (len(rows), self.n_items)
        indices = self.matrix.indices[gather]

        def part(matrix: csr_matrix) -> csr_matrix:
            return _csr(matrix.data[gather], indices, new_indptr, shape)

        return Histories(
            matrix=part(self.matrix),
            times=part(self.times),
            recency=part(self.recency),
            seen=part(self.seen),
            users=self.users[rows],
            timed=self.timed,
        )

    def with_events(
        self,
        rows: np.ndarray,
        items: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        times: np.ndarray | None = None,
        seen: np.ndarray | None = None,
    ) -> Histories:
        """These rows plus newer events (``rows[k]`` touched ``items[k]``)."""
        coo = self.matrix.tocoo()
        # Existing entries replay oldest first so that new events stay the most recent.
        order = np.lexsort((-self.recency.data, coo.row))
        n_new = len(np.asarray(rows))
        return Histories.from_events(
            self.n_rows,
            self.n_items,
            np.r_[coo.row[order], np.asarray(rows, dtype=np.int64)],
            np.r_[coo.col[order], np.asarray(items, dtype=np.int64)],
            weights=np.r_[coo.data[order], _or(weights, np.ones(n_new, np.float32))],
            times=np.r_[self.times.data[order], _or(times, np.full(n_new, np.nan))],
            seen=np.r_[self.seen.data[order] > 0, _or(seen, np.ones(n_new, dtype=bool))],
            users=self.users,
        )

    # -- persistence -----------------------------------------------------------------

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The batch as named arrays (for an npz), keys starting with ``prefix``."""
        return {
            f"{prefix}shape": np.asarray(self.matrix.shape, dtype=np.int64),
            f"{prefix}indptr": self.matrix.indptr.astype(np.int64),
            f"{prefix}indices": self.matrix.indices.astype(np.int64),
            f"{prefix}weights": self.matrix.data,
            f"{prefix}times": self.times.data,
            f"{prefix}recency": self.recency.data,
            f"{prefix}seen": self.seen.data,
            f"{prefix}users": self.users,
            f"{prefix}timed": np.asarray(self.timed),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> Histories:
        """The batch written by :meth:`to_arrays`; ValueError when inconsistent."""
        shape = tuple(int(v) for v in arrays[f"{prefix}shape"])
        indptr, indices = arrays[f"{prefix}indptr"], arrays[f"{prefix}indices"]

        def csr(key: str) -> csr_matrix:
            matrix = csr_matrix((arrays[f"{prefix}{key}"], indices, indptr), shape=shape)
            matrix.check_format(full_check=True)
            return matrix

        users = arrays[f"{prefix}users"].astype(np.int64)
        if users.shape != (shape[0],):
            raise ValueError(f"{prefix}users has shape {users.shape}, expected ({shape[0]},)")
        return cls(
            matrix=csr("weights"),
            times=csr("times"),
            recency=csr("recency"),
            seen=csr("seen"),
            users=users,
            timed=bool(arrays[f"{prefix}timed"]),
        )


def row_entries(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored entries of CSR rows ``rows`` (repeats allowed) as flat arrays: for each
    entry, its position in ``rows`` and its index in the matrix's data and indices.
    Gathering these once is cheaper than scipy's row indexing for a few rows."""
    starts, stops = indptr[rows], indptr[np.asarray(rows) + 1]
    lengths = stops - starts
    offsets = np.r_[0, np.cumsum(lengths)]
    entries = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return np.repeat(np.arange(len(lengths)), lengths), entries


def stack_rows(matrices: Sequence[csr_matrix]) -> csr_matrix:
    """The rows of ``matrices`` one after another (same columns, sorted indices),
    without scipy's vstack and its checks."""
    indices, indptr, shape = _stacked_structure(matrices)
    return _csr(np.concatenate([m.data for m in matrices]), indices, indptr, shape)


def _stacked_structure(
    matrices: Sequence[csr_matrix],
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Indices, indptr and shape of ``matrices`` stacked row-wise (each matrix's
    indptr shifted by the entries before it)."""
    offsets = np.cumsum([0] + [m.nnz for m in matrices[:-1]])
    indptr = np.concatenate(
        [matrices[0].indptr[:1]]
        + [m.indptr[1:] + offset for m, offset in zip(matrices, offsets, strict=True)]
    ).astype(np.int64)
    indices = np.concatenate([m.indices for m in matrices])
    shape = (int(sum(m.shape[0] for m in matrices)), matrices[0].shape[1])
    return indices, indptr, shape


def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple) -> csr_matrix:
    """A CSR matrix over arrays that already form a valid structure (sorted indices)."""
    matrix = csr_matrix((data, indices, indptr), shape=shape, copy=False)
    # Indices were sorted where these arrays came from; saying so spares scipy a check
    # (and a sort) on every product.
    matrix.has_sorted_indices = True
    return matrix


def _users(users: np.ndarray | None, n_rows: int) -> np.ndarray:
    if users is None:
        return np.full(n_rows, -1, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    if users.shape != (n_rows,):
        raise ValueError(f"users must have one entry per row ({n_rows}), got {users.shape}")
    return users


def _seen_mask(event_types: np.ndarray, seen_event_types: Sequence[str] | None) -> np.ndarray:
    if seen_event_types is None:
        return np.ones(len(event_types), dtype=bool)
    return np.isin(np.asarray(event_types, dtype=object), list(seen_event_types))


def _or(values: np.ndarray | None, default: np.ndarray) -> np.ndarray:
    return default if values is None else np.asarray(values)
