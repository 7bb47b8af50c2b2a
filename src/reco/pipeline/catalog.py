"""The catalogue as the pipeline sees it: titles, categories, availability, item history.

Built once from the training data and saved with the pipeline: filters read the
categories and availability, explanations the titles, features the item statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.dataset import Dataset
from reco.errors import ValidationError

AVAILABLE_COLUMN = "available"
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


@dataclass(frozen=True, eq=False)
class Catalog:
    """Per-item metadata, one entry per vocabulary item.

    ``categories`` is a binary items x categories CSR matrix over ``category_names``;
    ``available`` is False for items the items file marks unavailable; ``counts`` are
    training interactions; ``times`` (CSR-like: ``time_indptr`` per item, sorted
    epoch seconds) are those interactions' timestamps, empty without timestamps.
    """

    titles: np.ndarray
    categories: csr_matrix
    category_names: np.ndarray
    available: np.ndarray
    counts: np.ndarray
    time_indptr: np.ndarray
    times: np.ndarray

    @classmethod
    def from_dataset(cls, data: Dataset) -> Catalog:
        """The catalogue of ``data``: its item metadata and interaction statistics."""
        features = data.item_features
        ids = data.items.ids.astype(str)
        titles = ids.copy()
        categories = csr_matrix((data.n_items, 0), dtype=np.float32)
        names = np.zeros(0, dtype=str)
        available = np.ones(data.n_items, dtype=bool)
        if features is not None:
            if "title" in features:
                given = features["title"].astype(object).to_numpy()
                has = pd.notna(given) & (pd.Series(given).astype(str).str.strip() != "")
                titles = np.where(has.to_numpy(), given.astype(str), ids)
            if "categories" in features:
                categories, names = _category_matrix(features["categories"])
            if AVAILABLE_COLUMN in features:
                available = _availability(features[AVAILABLE_COLUMN])
        timed = ~np.isnan(data.timestamps)
        items, stamps = data.item_idx[timed], data.timestamps[timed]
        order = np.lexsort((stamps, items))
        indptr = np.r_[0, np.cumsum(np.bincount(items, minlength=data.n_items))]
        return cls(
            titles=titles.astype(str),
            categories=categories,
            category_names=np.asarray(names, dtype=str),
            available=available,
            counts=data.item_counts(),
            time_indptr=indptr.astype(np.int64),
            times=stamps[order].astype(np.float64),
        )

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.titles)

    @property
    def timed(self) -> bool:
        """True when item interaction times are known."""
        return len(self.times) > 0

    def first_seen(self) -> np.ndarray:
        """Time of each item's first training interaction (NaN: none, or no times)."""
        out = np.full(self.n_items, np.nan)
        has = np.diff(self.time_indptr) > 0
        out[has] = self.times[self.time_indptr[:-1][has]]
        return out

    def category_mask(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Items in any of the named categories; ValidationError naming unknown ones."""
        known = {name: k for k, name in enumerate(self.category_names.tolist())}
        unknown = [name for name in names if name not in known]
        if unknown:
            shown = ", ".join(sorted(known)[:30]) or "none (the items have no categories)"
            raise ValidationError(
                [f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {shown}"],
                source="filters",
            )
        columns = [known[name] for name in names]
        if not columns:
            return np.zeros(self.n_items, dtype=bool)
        return np.asarray(self.categories[:, columns].sum(axis=1)).ravel() > 0

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The catalogue as named arrays (for an npz without pickle)."""
        return {
            "catalog_titles": self.titles.astype(str),
            "catalog_category_indptr": self.categories.indptr.astype(np.int64),
            "catalog_category_indices": self.categories.indices.astype(np.int64),
            "catalog_category_names": self.category_names.astype(str),
            "catalog_available": self.available,
            "catalog_counts": self.counts,
            "catalog_time_indptr": self.time_indptr,
            "catalog_times": self.times,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Catalog:
        """The catalogue written by :meth:`to_arrays`; ValueError when inconsistent."""
        titles = arrays["catalog_titles"]
        n = len(titles)
        names = arrays["catalog_category_names"]
        indptr, indices = arrays["catalog_category_indptr"], arrays["catalog_category_indices"]
        categories = csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(n, len(names))
        )
        categories.check_format(full_check=True)
        catalog = cls(
            titles=titles,
            categories=categories,
            category_names=names,
            available=arrays["catalog_available"].astype(bool),
            counts=arrays["catalog_counts"].astype(np.int64),
            time_indptr=arrays["catalog_time_indptr"].astype(np.int64),
            times=arrays["catalog_times"].astype(np.float64),
        )
        if catalog.available.shape != (n,) or catalog.counts.shape != (n,):
            raise ValueError(f"catalogue arrays do not all have {n} items")
        if catalog.time_indptr.shape != (n + 1,) or catalog.time_indptr[-1] != len(catalog.times):
            raise ValueError("catalogue time index does not match its times")
        return catalog


def _category_matrix(values: pd.Series) -> tuple[csr_matrix, np.ndarray]:
    """Binary items x categories matrix of '|'-separated category strings."""
    values = values.reset_index(drop=True)
    text = values.astype(object).where(values.notna(), "").astype(str)
    exploded = text.str.split(schema.CATEGORY_SEPARATOR).explode()
    exploded = exploded.str.strip()
    exploded = exploded[exploded != ""]
    rows = exploded.index.to_numpy(dtype=np.int64)
    codes, names = pd.factorize(exploded.to_numpy(dtype=object), sort=True)
    matrix = csr_matrix(
        (np.ones(len(rows), np.float32), (rows, codes)), shape=(len(values), len(names))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, np.asarray(names, dtype=str)


def _availability(values: pd.Series) -> np.ndarray:
    """The ``available`` column read as booleans (missing: available)."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(True).to_numpy(dtype=bool)
    text = values.astype(object).where(values.notna(), "true").astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:5].tolist()
        raise ValidationError(
            [
                f"items column {AVAILABLE_COLUMN!r} holds {text[bad].iloc[0]!r} (item rows "
                f"{rows}); use true/false, yes/no or 1/0"
            ],
            source="items",
        )
    return text.isin(_TRUE).to_numpy()
