"""ALS: implicit-feedback matrix factorisation (implicit's CPU solver), users folded in.

Only the item factors are kept. A user is scored by solving for their factors from
the history row at request time ("fold-in"), so a user unseen at training and a
history that grew a minute ago are served as well as a training user.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.base import BaseRecommender

# Rows whose normal equations are solved in one batched LAPACK call while folding in.
FOLD_IN_BATCH = 256


class ALSRecommender(BaseRecommender):
    """Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008).

    Fitted with ``implicit.cpu.als.AlternatingLeastSquares``. As in implicit 0.7, an
    interaction of weight ``w`` has confidence ``c = alpha * w`` (items not in the
    history have confidence 1 and preference 0), and ``regularization`` is the plain
    L2 penalty on factors. A history row is folded in exactly as implicit's
    ``recalculate_user`` does, by solving
    ``(YᵀY + Yᵀ(C − I)Y + λI) x = YᵀC p`` for the user's factors ``x``; the scores
    are ``x @ Yᵀ``.

    The same ``seed`` gives bit-identical factors even with every core fitting:
    implicit solves each user's (item's) row on its own from the shared ``YᵀY``,
    with no sum across threads, so thread scheduling cannot change any result.
    """

    name: ClassVar[str] = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 42,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed

    def _check_params(self) -> None:
        for name in ("factors", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigurationError(f"als {name} must be a positive integer, got {value!r}")
        if not self.regularization > 0:
            raise ConfigurationError(
                f"als regularization must be > 0 (it keeps every fold-in solvable), "
                f"got {self.regularization!r}"
            )
        if not self.alpha > 0:
            raise ConfigurationError(f"als alpha must be > 0, got {self.alpha!r}")

    def _fit(self, data: Dataset) -> None:
        self._check_params()
        # implicit's own threads do the parallel work; BLAS threads on top of them
        # only oversubscribe the cores (implicit warns about exactly this).
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                dtype=np.float32,
                num_threads=0,
                random_state=int(self.seed),
            )
            model.fit(data.matrix(), show_progress=False)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.regularized_gram_ = _gram(self.item_factors_, self.regularization)

    def fold_in(self, histories: csr_matrix) -> np.ndarray:
        """Factors folded in from each history row (float64, rows x factors).

        An empty row gets zero factors, as in implicit.
        """
        histories = self._check_histories(histories)
        return self._fold_in(histories)

    def _fold_in(self, histories: csr_matrix) -> np.ndarray:
        y = self.item_factors_
        n_factors = y.shape[1]
        # YᵀY + λI is shared by every row; each row adds only its own items' terms.
        shared = self.regularized_gram_
        confidence = float(self.alpha) * histories.data.astype(np.float64)
        out = np.zeros((histories.shape[0], n_factors), dtype=np.float64)
        indptr, indices = histories.indptr, histories.indices
        rows = np.flatnonzero(np.diff(indptr))
        # Systems are built row by row but solved in batches (one LAPACK call each).
        batches = (
            [rows]
            if len(rows) <= FOLD_IN_BATCH
            else np.array_split(rows, -(-len(rows) // FOLD_IN_BATCH))
        )
        for batch in batches:
            a = np.empty((len(batch), n_factors, n_factors))
            b = np.empty((len(batch), n_factors, 1))
            for k, row in enumerate(batch):
                start, stop = indptr[row], indptr[row + 1]
                y_row = y[indices[start:stop]].astype(np.float64)
                c = confidence[start:stop]
                # A negative weight marks a dislike: confidence |c| that the preference is 0.
                a[k] = shared + (y_row.T * (np.abs(c) - 1.0)) @ y_row
                b[k, :, 0] = y_row.T @ np.where(c > 0, c, 0.0)
            if len(batch):
                out[batch] = np.linalg.solve(a, b)[:, :, 0]
        return out

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        x = self._fold_in(histories).astype(np.float32)
        return x @ self.item_factors_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors_": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        factors = state["item_factors_"]
        if factors.ndim != 2 or factors.shape[0] != self.n_items_:
            raise ValueError(
                f"item_factors_ has shape {factors.shape}, expected ({self.n_items_}, factors)"
            )
        self.item_factors_ = factors
        self.regularized_gram_ = _gram(factors, self.regularization)


def _gram(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """YᵀY + λI in float64: computed once per fit or load, not on every request."""
    y = item_factors.astype(np.float64)
    gram = y.T @ y
    gram[np.diag_indices(y.shape[1])] += float(regularization)
    return gram
