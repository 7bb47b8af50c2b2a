"""Explanations: a short reason a person reads, for every recommended item.

The reason follows the source that put the item highest:

* collaborative sources (item-kNN, EASE, ALS, two-tower): "because you watched
  <title>", the history item whose item-kNN similarity to the item contributes most;
* content: "similar to items you liked"; segment popularity: "popular with people
  aged 25-34" / "popular on mobile in DE"; trending: "trending this week";
  popularity and the fallback fill: "popular overall"; exploration: "new in the
  catalogue".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from reco.models.base import BaseRecommender
from reco.pipeline.catalog import Catalog
from reco.pipeline.history import Histories, row_entries
from reco.pipeline.sources import SEGMENT_SOURCE, TRENDING_SOURCE

FALLBACK = "fallback"
EXPLORATION = "exploration"
POPULAR_OVERALL = "popular overall"
SIMILAR_CONTENT = "similar to items you liked"
SIMILAR_TASTE = "liked by people with similar taste"
NEW_ITEM = "new in the catalogue"
KNN_SOURCE = "itemknn"


def trending_reason(model: BaseRecommender | None) -> str:
    """ "trending this week", or over the model's own half-life when it is longer."""
    days = float(getattr(model, "half_life_days", 7.0) or 7.0)
    if days <= 7:
        return "trending this week"
    if days <= 31:
        return "trending this month"
    return "trending lately"


class Explainer:
    """Writes reasons for (row, item, source) triples of one batch."""

    def __init__(
        self,
        sources: Mapping[str, BaseRecommender],
        catalog: Catalog,
        history_template: str,
    ) -> None:
        self.sources = sources
        self.catalog = catalog
        self.history_template = history_template
        knn = sources.get(KNN_SOURCE)
        similarity = getattr(knn, "similarity_", None)
        # Row i of the transpose holds every item's similarity to item i.
        self._towards = None if similarity is None else csr_matrix(similarity.T)

    def explain(
        self,
        histories: Histories,
        rows: np.ndarray,
        items: np.ndarray,
        sources: np.ndarray,
        contexts: Sequence[Mapping[str, Any]],
    ) -> np.ndarray:
        """Reasons (object array of str) for ``items[k]`` shown to row ``rows[k]``
        because of source ``sources[k]``."""
        reasons = np.full(len(rows), POPULAR_OVERALL, dtype=object)
        personal = ~np.isin(
            sources, [FALLBACK, EXPLORATION, "popularity", TRENDING_SOURCE, SEGMENT_SOURCE]
        )
        content = sources == "content"
        reasons[content] = SIMILAR_CONTENT
        collaborative = personal & ~content
        if collaborative.any():
            reasons[collaborative] = self._because(
                histories, rows[collaborative], items[collaborative]
            )
        reasons[sources == EXPLORATION] = NEW_ITEM
        reasons[sources == TRENDING_SOURCE] = trending_reason(self.sources.get(TRENDING_SOURCE))
        segment = self.sources.get(SEGMENT_SOURCE)
        for k in np.flatnonzero(sources == SEGMENT_SOURCE):
            reasons[k] = self._segment_reason(segment, contexts[rows[k]], int(items[k]))
        return reasons

    def _because(self, histories: Histories, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """ "because you watched <title>" from the top item-kNN contribution."""
        out = np.full(len(rows), SIMILAR_TASTE, dtype=object)
        if self._towards is None or len(rows) == 0:
            return out
        # Contribution of history item h to item i: weight(h) * similarity(h, i), for
        # every stored neighbour h of each pair's item, gathered as flat arrays (scipy's
        # row indexing and products cost more than the arithmetic for a few pairs).
        towards = self._towards
        pair, entries = row_entries(towards.indptr, items)
        neighbours = towards.indices[entries]
        weights = _entries(histories.matrix, rows[pair], neighbours)
        contributions = weights * towards.data[entries]
        positive = contributions > 0  # a dislike (or no history weight) explains nothing
        pair, neighbours, contributions = (
            pair[positive],
            neighbours[positive],
            contributions[positive],
        )
        # Per pair the largest contribution, the lowest item index among equals.
        order = np.lexsort((neighbours, -contributions, pair))
        first = order[np.r_[True, pair[order][1:] != pair[order][:-1]]] if len(order) else order
        titles = self.catalog.titles[neighbours[first]]
        out[pair[first]] = [self.history_template.format(title=title) for title in titles]
        return out

    def _segment_reason(
        self, segment: BaseRecommender | None, context: Mapping[str, Any], item: int
    ) -> str:
        if segment is None or not context or not hasattr(segment, "explain_context"):
            return POPULAR_OVERALL
        return segment.explain_context(context, item) or POPULAR_OVERALL


def _entries(matrix: csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``matrix[rows[k], columns[k]]`` for every k (0 where nothing is stored); the
    matrix's indices must be sorted within each row."""
    keys = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = keys * matrix.shape[1] + matrix.indices
    wanted = rows.astype(np.int64) * matrix.shape[1] + columns
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = keys[at] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
    return np.where(found, matrix.data[at] if len(keys) else 0.0, 0.0)
