"""Metadata as integer codes for the two-tower network's embedding tables.

Items: ``|``-separated categories (a vocabulary), words of ``title`` and ``text`` (a
hashed bag of words, so new items' words need no vocabulary) and any other attribute
column. Users: their attribute columns. An attribute is categorical (a vocabulary of
its values) or numeric (quantile buckets, e.g. age or year); columns that identify
rows (nearly one value per row, like an IMDb URL or a zip code) carry no shared
signal and are left out. Code 0 always means "unknown / padding", so a value never
seen while fitting lands in a shared unknown bucket.

Encoders are fitted once, saved as JSON and applied to any frame with the same columns.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CATEGORIES = "categories"
TEXT_COLUMNS = ("title", "text")
CATEGORY_SEPARATOR = "|"
_TOKEN = re.compile(r"[0-9a-z]+")
# A column with more distinct values than this share of its rows identifies rows.
ID_LIKE_SHARE = 0.5
MAX_CATEGORY_VALUES = 1000
NUMERIC_BUCKETS = 10


@dataclass(frozen=True)
class Attribute:
    """One encoded column: ``values`` (categorical) or bucket ``edges`` (numeric)."""

    name: str
    values: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    numeric: bool = False

    @property
    def size(self) -> int:
        """Rows its embedding table needs (codes 0..size-1, 0 = unknown)."""
        return (len(self.edges) + 2) if self.numeric else (len(self.values) + 1)

    def encode(self, column: pd.Series) -> np.ndarray:
        """Codes of a column: 1.. for known values or buckets, 0 for unknown or missing."""
        if self.numeric:
            numbers = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
            codes = np.searchsorted(np.asarray(self.edges), numbers, side="right") + 1
            return np.where(np.isnan(numbers), 0, codes).astype(np.int64)
        lookup = pd.Index(self.values)
        strings = column.astype("object").where(column.notna(), None)
        codes = lookup.get_indexer(strings.map(lambda v: None if v is None else str(v)))
        return (codes + 1).astype(np.int64)  # -1 (unknown) becomes 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "numeric": self.numeric,
            "values": list(self.values),
            "edges": list(self.edges),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Attribute:
        """The attribute described by :meth:`to_json`."""
        return cls(
            name=str(raw["name"]),
            numeric=bool(raw["numeric"]),
            values=tuple(str(v) for v in raw["values"]),
            edges=tuple(float(e) for e in raw["edges"]),
        )


def fit_attributes(frame: pd.DataFrame | None, exclude: tuple[str, ...]) -> list[Attribute]:
    """The usable attribute columns of ``frame`` (all but ``exclude``), in column order."""
    if frame is None:
        return []
    attributes = []
    for name in frame.columns:
        if name in exclude:
            continue
        attribute = _fit_attribute(str(name), frame[name])
        if attribute is not None:
            attributes.append(attribute)
    return attributes


def _fit_attribute(name: str, column: pd.Series) -> Attribute | None:
    present = column.dropna()
    if present.empty:
        return None
    distinct = present.nunique()
    if distinct < 2:
        return None  # one value for everyone says nothing
    id_like = len(present) >= 20 and distinct > ID_LIKE_SHARE * len(present)
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        if id_like or distinct > MAX_CATEGORY_VALUES:
            return None
        values = sorted(str(v) for v in present.unique())
        return Attribute(name=name, values=tuple(values))
    if id_like:
        return None
    numbers = present.astype("float64").to_numpy()
    quantiles = np.quantile(numbers, np.linspace(0, 1, NUMERIC_BUCKETS + 1)[1:-1])
    return Attribute(name=name, edges=tuple(float(e) for e in np.unique(quantiles)), numeric=True)


def encode_attributes(
    frame: pd.DataFrame | None, attributes: list[Attribute], n: int
) -> np.ndarray:
    """Codes (n x len(attributes), int64) of ``frame``'s rows; 0 where a column is absent."""
    codes = np.zeros((n, len(attributes)), dtype=np.int64)
    if frame is None:
        return codes
    for j, attribute in enumerate(attributes):
        if attribute.name in frame.columns:
            codes[:, j] = attribute.encode(frame[attribute.name])
    return codes


def tokens(text: str) -> list[str]:
    """Lower-case words of two or more letters or digits."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1]


def hash_token(token: str, buckets: int) -> int:
    """A stable bucket 1..buckets for a word (crc32: the same in every process)."""
    return zlib.crc32(token.encode("utf-8")) % buckets + 1


@dataclass
class ItemFeatureEncoder:
    """How items' metadata becomes codes: category vocabulary, text hashing, attributes."""

    categories: tuple[str, ...] = ()
    text_buckets: int = 0
    max_tokens: int = 0
    max_categories: int = 0
    attributes: list[Attribute] = field(default_factory=list)

    @classmethod
    def fit(
        cls, frame: pd.DataFrame | None, *, text_buckets: int, max_tokens: int
    ) -> ItemFeatureEncoder:
        """Learn the vocabularies from an item metadata frame (``None``: no features)."""
        if frame is None:
            return cls()
        categories: tuple[str, ...] = ()
        max_categories = 0
        if CATEGORIES in frame.columns:
            lists = _category_lists(frame[CATEGORIES])
            categories = tuple(sorted({c for row in lists for c in row}))
            max_categories = max((len(row) for row in lists), default=0)
        has_text = any(name in frame.columns and frame[name].notna().any() for name in TEXT_COLUMNS)
        skip = ("item_id", CATEGORIES, *TEXT_COLUMNS)
        return cls(
            categories=categories,
            text_buckets=text_buckets if has_text else 0,
            max_tokens=max_tokens if has_text else 0,
            max_categories=max_categories if categories else 0,
            attributes=fit_attributes(frame, skip),
        )

    def transform(self, frame: pd.DataFrame | None, n: int) -> dict[str, np.ndarray]:
        """Padded code matrices for ``n`` items: categories, tokens (0 = none) and attributes."""
        out = {
            "categories": np.zeros((n, self.max_categories), dtype=np.int64),
            "tokens": np.zeros((n, self.max_tokens), dtype=np.int64),
            "attributes": encode_attributes(frame, self.attributes, n),
        }
        if frame is None:
            return out
        if self.max_categories and CATEGORIES in frame.columns:
            lookup = {c: k + 1 for k, c in enumerate(self.categories)}
            for row, names in enumerate(_category_lists(frame[CATEGORIES])):
                codes = [lookup[c] for c in names if c in lookup][: self.max_categories]
                out["categories"][row, : len(codes)] = codes
        if self.max_tokens:
            texts = [frame[name].tolist() for name in TEXT_COLUMNS if name in frame.columns]
            for row in range(n):
                words = " ".join(t[row] for t in texts if isinstance(t[row], str))
                codes = list(dict.fromkeys(hash_token(w, self.text_buckets) for w in tokens(words)))
                codes = codes[: self.max_tokens]
                out["tokens"][row, : len(codes)] = codes
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "categories": list(self.categories),
            "text_buckets": self.text_buckets,
            "max_tokens": self.max_tokens,
            "max_categories": self.max_categories,
            "attributes": [a.to_json() for a in self.attributes],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ItemFeatureEncoder:
        """The encoder described by :meth:`to_json`."""
        return cls(
            categories=tuple(str(c) for c in raw["categories"]),
            text_buckets=int(raw["text_buckets"]),
            max_tokens=int(raw["max_tokens"]),
            max_categories=int(raw["max_categories"]),
            attributes=[Attribute.from_json(a) for a in raw["attributes"]],
        )


def _category_lists(column: pd.Series) -> list[list[str]]:
    """Each row's distinct categories, in order ('' and missing give none)."""
    rows = []
    for value in column.tolist():
        if not isinstance(value, str):
            rows.append([])
            continue
        parts = (p.strip() for p in value.split(CATEGORY_SEPARATOR))
        rows.append(list(dict.fromkeys(p for p in parts if p)))
    return rows
