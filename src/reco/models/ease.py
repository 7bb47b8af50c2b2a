"""EASE: a closed-form item-item linear model (Steck, "Embarrassingly Shallow Autoencoders")."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.base import BaseRecommender

log = logging.getLogger(__name__)

# Peak bytes per squared item while fitting: the float64 Gram matrix and its inverse
# (LAPACK works on a copy), then the float32 weights kept.
FIT_BYTES_PER_CELL = 8 + 8 + 4
# Up to this many runs of consecutive active items, scores are placed by slices.
MAX_COPIED_RUNS = 64


def fit_memory_bytes(n_items: int) -> int:
    """Peak memory EASE needs to fit on ``n_items`` items (dense items x items)."""
    return FIT_BYTES_PER_CELL * n_items * n_items


class EASERecommender(BaseRecommender):
    """Item-item weights ``B`` learnt in closed form; a row's scores are ``history @ B``.

    ``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + l2·I)⁻¹``, i.e. the ridge
    regression of every item on all the others with a zero diagonal. Only items with
    at least one training interaction take part (the others would get all-zero
    weights anyway), and ``max_items`` caps them: ``B`` is dense, so memory grows
    with the square of the catalogue and fitting with its cube.
    """

    name: ClassVar[str] = "ease"

    def __init__(self, *, l2: float = 200.0, max_items: int = 20000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _fit(self, data: Dataset) -> None:
        if not self.l2 > 0:
            raise ConfigurationError(f"ease l2 must be > 0, got {self.l2!r}")
        counts = data.item_counts()
        active = np.flatnonzero(counts > 0)
        n_active = len(active)
        if n_active > self.max_items:
            need = fit_memory_bytes(n_active) / 2**30
            raise ConfigurationError(
                f"ease cannot fit {n_active} items: its limit is max_items={self.max_items}, "
                f"and its dense {n_active} x {n_active} item-item matrix would take about "
                f"{need:.1f} GiB of memory to fit. Raise the limit if the machine has the "
                f'memory (e.g. RECO_MODEL_PARAMS=\'{{"ease": {{"max_items": {n_active}}}}}\'), '
                f"or pick a model that scales to large catalogues: itemknn or als."
            )
        log.info(
            "ease: fitting %d items (about %.2f GiB)", n_active, fit_memory_bytes(n_active) / 2**30
        )
        x = data.matrix()[:, active]
        gram = (x.T @ x).astype(np.float64).toarray()
        gram[np.diag_indices(n_active)] += float(self.l2)
        weights = np.linalg.inv(gram)
        del gram
        # In place, to keep the peak at one float64 matrix plus the float32 result.
        weights /= -np.diag(weights).copy()
        weights[np.diag_indices(n_active)] = 0.0
        self.active_items_ = active.astype(np.int64)
        self.weights_ = weights.astype(np.float32)
        self._derive()

    def _derive(self) -> None:
        """Lookups computed from ``active_items_`` (never saved): each item's position
        among the active items (-1: inactive), and the runs of consecutive active items,
        as (first item, first position, length)."""
        active = self.active_items_
        self._position = np.full(self.n_items_, -1, dtype=np.int64)
        self._position[active] = np.arange(len(active))
        if len(active) == 0:
            self._runs = []
            return
        starts = np.r_[0, np.flatnonzero(np.diff(active) != 1) + 1]
        lengths = np.diff(np.r_[starts, len(active)])
        self._runs = [
            (int(active[s]), int(s), int(n)) for s, n in zip(starts, lengths, strict=True)
        ]

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        if len(self.active_items_) == self.n_items_:
            return np.asarray(histories @ self.weights_, dtype=np.float32)
        scores = np.zeros((histories.shape[0], self.n_items_), dtype=np.float32)
        if len(self.active_items_):
            product = self._active_columns(histories) @ self.weights_
            if len(self._runs) > MAX_COPIED_RUNS:
                scores[:, self.active_items_] = product
            else:
                # A few slice copies: scattering every column by an index array cost
                # more than the product itself for short histories.
                for item, position, length in self._runs:
                    scores[:, item : item + length] = product[:, position : position + length]
        return scores

    def _active_columns(self, histories: csr_matrix) -> csr_matrix:
        """``histories[:, active_items_]``, by renumbering the stored entries' columns
        (scipy's column indexing costs more than the product for short histories)."""
        columns = self._position[histories.indices]
        keep = columns >= 0
        indptr = histories.indptr if keep.all() else np.r_[0, np.cumsum(keep)][histories.indptr]
        matrix = csr_matrix(
            (histories.data[keep], columns[keep], indptr),
            shape=(histories.shape[0], len(self.active_items_)),
        )
        # Positions grow with item indices, so sorted columns stay sorted.
        matrix.has_sorted_indices = histories.has_sorted_indices
        return matrix

    def _state(self) -> dict[str, np.ndarray]:
        return {"active_items_": self.active_items_, "weights_": self.weights_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        active, weights = state["active_items_"], state["weights_"]
        n_active = len(active)
        if active.ndim != 1 or (n_active and (active.min() < 0 or active.max() >= self.n_items_)):
            raise ValueError(f"active_items_ does not index the model's {self.n_items_} items")
        if weights.shape != (n_active, n_active):
            raise ValueError(
                f"weights_ has shape {weights.shape}, expected ({n_active}, {n_active})"
            )
        self.active_items_ = active
        self.weights_ = weights
        self._derive()
