"""The protocol reproduces DESIGN.md's ml-100k reference numbers with reference models.

EASE and popularity are written here, independent of reco.models, so that this test
checks the protocol (split, exclusion, metrics) and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.evaluation.protocol import run_protocol
from reco.models.base import BaseRecommender

# NDCG@10 on ml-100k from DESIGN.md, "Evaluation protocol".
REFERENCE_NDCG = {"ease": 0.2035, "popularity": 0.119}
TOLERANCE = 0.03  # relative


class ReferenceEASE(BaseRecommender):
    """EASE closed form: B = -P / diag(P), diag(B) = 0, P = (X^T X + lambda I)^-1."""

    name = "reference_ease"

    def __init__(self, *, regularization: float = 200.0) -> None:
        self.regularization = regularization

    def _fit(self, data: Dataset) -> None:
        x = data.matrix().toarray().astype(np.float64)
        gram = x.T @ x + self.regularization * np.eye(x.shape[1])
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        self.weights_ = b.astype(np.float32)

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.asarray(histories @ self.weights_)


class ReferencePopularity(BaseRecommender):
    """Training interaction count per item, the same for every user."""

    name = "reference_popularity"

    def __init__(self) -> None:
        pass

    def _fit(self, data: Dataset) -> None:
        pass

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.tile(self.popularity_, (histories.shape[0], 1))


@pytest.mark.slow
def test_protocol_reproduces_the_ml100k_reference_ndcg(ml100k_binary: Dataset) -> None:
    data = ml100k_binary
    report = run_protocol(
        {"ease": ReferenceEASE(regularization=200.0), "popularity": ReferencePopularity()},
        data,
        name="ml-100k",
    )
    print(report.to_markdown())
    # 943 users all with >= 20 ratings: sum of floor(0.2 n) = 19,633 test rows, of
    # which 84 name items that only occur in the test part and are dropped.
    assert report.dataset["test_users"] == 943
    assert report.dataset["train_interactions"] == 100_000 - 19_633
    assert report.dataset["test_interactions"] == 19_549
    for evaluation in report.evaluations:
        reference = REFERENCE_NDCG[evaluation.name]
        ndcg = evaluation.metrics["ndcg@10"]
        assert abs(ndcg - reference) <= TOLERANCE * reference, (evaluation.name, ndcg)
    ease, popularity = report.evaluations
    assert ease.metrics["recall@20"] > popularity.metrics["recall@20"]
    assert ease.metrics["coverage@10"] > popularity.metrics["coverage@10"]
