"""Item-kNN: items similar to the ones in a user's history, via implicit's item-item models."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from implicit.utils import ParameterWarning
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.base import BaseRecommender

SIMILARITIES = ("cosine", "bm25")


class ItemKNNRecommender(BaseRecommender):
    """Scores an item by its similarity to the items in the history row.

    The item-item similarity keeps the ``k`` nearest neighbours of each item
    (the item itself included, as implicit does), computed by implicit with
    ``"cosine"`` or ``"bm25"`` weighting (``bm25_k1`` and ``bm25_b`` tune the
    latter). A row's score is ``history @ similarity``, exactly what implicit's own
    ``recommend`` computes, so any history works: a user unseen at training, or one
    whose history has grown since.
    """

    name: ClassVar[str] = "itemknn"

    def __init__(
        self,
        *,
        k: int = 100,
        similarity: str = "cosine",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _check_params(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ConfigurationError(
                f"itemknn similarity {self.similarity!r} is unknown; "
                f"choose from: {', '.join(SIMILARITIES)}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ConfigurationError(
                f"itemknn k (neighbours per item) must be a positive integer, got {self.k!r}"
            )
        if self.similarity == "bm25" and not (self.bm25_k1 >= 0 and 0 <= self.bm25_b <= 1):
            raise ConfigurationError(
                f"itemknn bm25 needs bm25_k1 >= 0 and 0 <= bm25_b <= 1, "
                f"got bm25_k1={self.bm25_k1!r}, bm25_b={self.bm25_b!r}"
            )

    def _fit(self, data: Dataset) -> None:
        self._check_params()
        if self.similarity == "bm25":
            knn = BM25Recommender(
                K=int(self.k), K1=float(self.bm25_k1), B=float(self.bm25_b), num_threads=0
            )
        else:
            knn = CosineRecommender(K=int(self.k), num_threads=0)
        # num_threads=0 uses every core: each item's neighbour list is computed on its
        # own, so the result does not depend on the thread count.
        with warnings.catch_warnings():
            # implicit converts its own internal COO weighting to CSR and warns about it.
            warnings.simplefilter("ignore", ParameterWarning)
            knn.fit(data.matrix(), show_progress=False)
        similarity = csr_matrix(knn.similarity, dtype=np.float32)
        similarity.sort_indices()
        self.similarity_ = similarity

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return (histories @ self.similarity_).toarray().astype(np.float32, copy=False)

    def _state(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {
            "similarity_data": s.data,
            "similarity_indices": s.indices,
            "similarity_indptr": s.indptr,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        indptr = state["similarity_indptr"]
        if indptr.shape != (n + 1,):
            raise ValueError(
                f"similarity_indptr has shape {indptr.shape}, expected ({n + 1},) for {n} items"
            )
        self.similarity_ = csr_matrix(
            (state["similarity_data"], state["similarity_indices"], indptr), shape=(n, n)
        )
        self.similarity_.check_format(full_check=True)
