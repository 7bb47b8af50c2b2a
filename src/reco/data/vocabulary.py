"""Vocabulary: external string ids <-> dense integer indices."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

# Up to this many ids a lookup goes one by one.
_FEW = 32


class Vocabulary:
    """A fixed, ordered mapping between external string ids and indices ``0..n-1``.

    Models work on the indices; only the pipeline and the edges (files, HTTP, CLI)
    see the strings. Unknown ids map to ``-1`` in :meth:`lookup`.
    """

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids = _as_object_strings(ids)
        self._index = pd.Index(self._ids, dtype=object)
        if not self._index.is_unique:
            raise ValueError("Vocabulary ids must be unique")

    @classmethod
    def from_values(cls, values: Iterable[str]) -> Vocabulary:
        """Build a vocabulary of the distinct values, in order of first appearance."""
        return cls(pd.unique(_as_object_strings(values)))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    __hash__ = None  # type: ignore[assignment]

    @property
    def ids(self) -> np.ndarray:
        """The external ids, position = index (object array of str)."""
        return self._ids

    def lookup(self, external_ids: Iterable[str]) -> np.ndarray:
        """Indices of the given ids as int64, ``-1`` where an id is unknown."""
        if isinstance(external_ids, list | tuple) and len(external_ids) <= _FEW:
            # A request's few ids: a hash lookup each, not pandas' vectorised machinery
            # (which costs about a millisecond of setup per call).
            return np.array([self._position(i) for i in external_ids], dtype=np.int64)
        values = pd.Index(_as_object_strings(external_ids), dtype=object)
        return self._index.get_indexer(values).astype(np.int64)

    def index_of(self, external_id: str) -> int:
        """Index of one id; raises ``KeyError`` naming the id when unknown."""
        position = self._position(external_id)
        if position < 0:
            raise KeyError(f"unknown id {external_id!r}")
        return position

    def _position(self, external_id: object) -> int:
        try:
            position = self._index.get_loc(str(external_id))
        except KeyError:
            return -1
        # get_loc answers a slice or mask only for repeated ids, which a vocabulary has not.
        return int(position)

    def to_external(self, indices: np.ndarray) -> np.ndarray:
        """External ids of the given indices (``None`` where an index is ``-1``)."""
        indices = np.asarray(indices)
        out = np.empty(indices.shape, dtype=object)
        valid = indices >= 0
        out[valid] = self._ids[indices[valid]]
        out[~valid] = None
        return out


def _as_object_strings(values: Iterable[str]) -> np.ndarray:
    """An object array of str from any iterable of ids (vectorised for Series and arrays)."""
    if not isinstance(values, pd.Series | pd.Index | np.ndarray):
        values = list(values)
    series = pd.Series(values, copy=False)
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=False) != "string":
        series = series.astype(str)
    return series.to_numpy(dtype=object)
