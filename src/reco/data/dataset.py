"""Dataset: interactions as dense indices, with the vocabularies and metadata behind them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.vocabulary import Vocabulary


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions of users with items, ready for models.

    Arrays are aligned by row: ``user_idx[k]`` interacted with ``item_idx[k]`` at
    ``timestamps[k]`` (epoch seconds, NaN when unknown) with weight ``weights[k]``.
    ``items`` and ``users`` hold metadata with one row per vocabulary entry (in
    vocabulary order) or are ``None``. Splits share the parent's vocabularies, so an
    index means the same item in train, validation and test.
    """

    users: Vocabulary
    items: Vocabulary
    user_idx: np.ndarray
    item_idx: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray
    event_types: np.ndarray
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    _matrix: list = field(default_factory=list, repr=False)  # memo of matrix()

    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        *,
        event_weights: dict[str, float] | None = None,
        use_value_as_weight: bool = False,
    ) -> Dataset:
        """Build a dataset from canonical frames (see :mod:`reco.data.schema`).

        Every interaction counts as an implicit positive of weight 1, or of its event
        type's weight in ``event_weights``, or of its ``value`` when
        ``use_value_as_weight``. Items and users named only in the metadata frames
        join the vocabularies too (cold items and users).
        """
        interactions = schema.normalize_interactions(interactions)
        user_vocab, user_idx = _encode(interactions[schema.USER], users, schema.USER)
        item_vocab, item_idx = _encode(interactions[schema.ITEM], items, schema.ITEM)

        weights = np.ones(len(interactions), dtype=np.float32)
        event_types = interactions[schema.EVENT_TYPE].to_numpy(dtype=object)
        if event_weights:
            mapped = pd.Series(event_types).map(event_weights).fillna(1.0)
            weights = mapped.to_numpy(dtype=np.float32)
        if use_value_as_weight:
            values = interactions[schema.VALUE].to_numpy(dtype=np.float64)
            weights = np.where(np.isnan(values), weights, values).astype(np.float32)

        timestamps = interactions[schema.TIMESTAMP].astype("float64").to_numpy(na_value=np.nan)
        return cls(
            users=user_vocab,
            items=item_vocab,
            user_idx=user_idx,
            item_idx=item_idx,
            timestamps=timestamps,
            weights=weights,
            event_types=event_types,
            item_features=_align(items, schema.ITEM, item_vocab),
            user_features=_align(users, schema.USER, user_vocab),
        )

    @property
    def n_users(self) -> int:
        """Number of users in the vocabulary (with or without interactions here)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items in the vocabulary (with or without interactions here)."""
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        """Number of interaction rows."""
        return len(self.user_idx)

    @property
    def has_timestamps(self) -> bool:
        """True when every interaction has a timestamp."""
        return self.n_interactions > 0 and not np.isnan(self.timestamps).any()

    def matrix(self) -> csr_matrix:
        """The users x items matrix of summed weights (float32, CSR, computed once)."""
        if not self._matrix:
            m = csr_matrix(
                (self.weights, (self.user_idx, self.item_idx)),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
            m.sum_duplicates()
            m.sort_indices()
            self._matrix.append(m)
        return self._matrix[0]

    def item_counts(self) -> np.ndarray:
        """Interactions per item (int64, one entry per vocabulary item)."""
        return np.bincount(self.item_idx, minlength=self.n_items).astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """Interactions per user (int64, one entry per vocabulary user)."""
        return np.bincount(self.user_idx, minlength=self.n_users).astype(np.int64)

    def subset(self, mask: np.ndarray) -> Dataset:
        """The interactions selected by a boolean mask or index array, same vocabularies."""
        return replace(
            self,
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
            timestamps=self.timestamps[mask],
            weights=self.weights[mask],
            event_types=self.event_types[mask],
            _matrix=[],
        )

    def to_frame(self) -> pd.DataFrame:
        """The interactions back as a canonical frame with external ids."""
        ts = pd.array(self.timestamps, dtype="Float64").round().astype("Int64")
        return pd.DataFrame(
            {
                schema.USER: self.users.ids[self.user_idx],
                schema.ITEM: self.items.ids[self.item_idx],
                schema.TIMESTAMP: ts,
                schema.VALUE: self.weights.astype(np.float64),
                schema.EVENT_TYPE: self.event_types,
                schema.EVENT_ID: None,
            }
        )

    def fingerprint(self) -> str:
        """A sha256 of the interactions and vocabularies: same data, same fingerprint."""
        digest = hashlib.sha256()
        for array in (self.user_idx, self.item_idx, self.timestamps, self.weights):
            digest.update(np.ascontiguousarray(array).tobytes())
        for vocab in (self.users, self.items):
            digest.update("\x1f".join(vocab.ids.tolist()).encode())
        return digest.hexdigest()


def _encode(
    ids: pd.Series, metadata: pd.DataFrame | None, key: str
) -> tuple[Vocabulary, np.ndarray]:
    """Vocabulary of the ids (then metadata-only ids) and the interactions' indices."""
    n_interactions = len(ids)
    if metadata is not None:
        ids = pd.concat([ids, schema.as_str(metadata[key])], ignore_index=True)
    codes, uniques = pd.factorize(ids)  # one hash pass, indices in order of appearance
    return Vocabulary(uniques), codes[:n_interactions].astype(np.int32)


def _align(frame: pd.DataFrame | None, key: str, vocab: Vocabulary) -> pd.DataFrame | None:
    """Metadata reindexed to vocabulary order (rows for ids without metadata are empty)."""
    if frame is None:
        return None
    frame = frame.copy()
    frame[key] = frame[key].astype(str)
    frame = frame.drop_duplicates(key, keep="last").set_index(key)
    aligned = frame.reindex(pd.Index(vocab.ids, name=key))
    return aligned.reset_index()
