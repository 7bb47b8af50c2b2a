"""Popularity: the same ranking for everyone, all-time or over a recent window.

The baseline every other model must beat, and the fallback for cold users.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.base import BaseRecommender

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0


class PopularityRecommender(BaseRecommender):
    """Ranks items by how many training interactions they have.

    With ``window_days`` only interactions within that many days before the newest
    training timestamp count ("recent popularity"); items tied there (typically
    those with no recent interaction) are ordered by all-time counts. Without
    timestamps in the data the window cannot be placed, so all-time counts are used
    and a warning is logged.

    The same score vector answers every history row, and it is also the fallback
    for empty rows, so a cold user sees exactly this ranking.
    """

    name: ClassVar[str] = "popularity"

    def __init__(self, *, window_days: float | None = None) -> None:
        self.window_days = window_days

    def _fit(self, data: Dataset) -> None:
        if self.window_days is not None and not self.window_days > 0:
            raise ConfigurationError(
                f"popularity window_days must be a positive number of days or None "
                f"(all-time), got {self.window_days!r}"
            )
        all_time = data.item_counts().astype(np.float64)
        scores = all_time
        if self.window_days is not None:
            if data.has_timestamps:
                newest = float(np.max(data.timestamps))
                since = newest - float(self.window_days) * SECONDS_PER_DAY
                recent = data.timestamps >= since
                recent_counts = np.bincount(data.item_idx[recent], minlength=data.n_items).astype(
                    np.float64
                )
                # All-time counts scaled into [0, 0.5) break ties among equal recent
                # counts without reordering two different ones, even after the
                # float32 rounding below.
                scores = recent_counts + 0.5 * all_time / (all_time.max() + 1.0)
            else:
                log.warning(
                    "popularity window_days=%s ignored: the training data has no (or "
                    "incomplete) timestamps, so all-time counts are used",
                    self.window_days,
                )
        self.item_scores_ = scores.astype(np.float32)
        # Empty rows get the base fallback; make it this model's own ranking.
        self.popularity_ = self.item_scores_

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.tile(self.item_scores_, (histories.shape[0], 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores_": self.item_scores_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        scores = state["item_scores_"]
        if scores.shape != (self.n_items_,):
            raise ValueError(f"item_scores_ has shape {scores.shape}, expected ({self.n_items_},)")
        self.item_scores_ = scores
