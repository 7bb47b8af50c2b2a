"""The protocol runner: which users and items are evaluated, exclusion, the metric set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.data.split import temporal_user_holdout
from reco.evaluation.protocol import (
    evaluate_model,
    evaluate_recommendations,
    evaluation_users,
    relevance_matrix,
    run_protocol,
    validation_split,
)
from reco.models.base import BaseRecommender

# Row order fixes the indices: users a=0, b=1, c=2, d=3; items x0=0, x1=1, x2=2,
# x3=3, x5=4 (only in test) and x4=5 (only in the item metadata: never interacted).
ROWS = [
    ("a", "x0", "train"),
    ("a", "x1", "train"),
    ("a", "x2", "test"),
    ("a", "x3", "test"),
    ("b", "x1", "train"),
    ("b", "x2", "train"),
    ("b", "x3", "train"),
    ("b", "x0", "test"),
    ("c", "x0", "train"),
    ("a", "x5", "test"),  # x5 has no train interaction: not rankable, ignored
    ("d", "x5", "test"),  # so d has nothing to evaluate
]


def fixture_split() -> tuple[Dataset, Dataset]:
    frame = pd.DataFrame(
        {
            "user_id": [r[0] for r in ROWS],
            "item_id": [r[1] for r in ROWS],
            "timestamp": range(len(ROWS)),
        }
    )
    data = Dataset.from_frames(frame, items=pd.DataFrame({"item_id": ["x4"]}))
    is_test = np.array([r[2] == "test" for r in ROWS])
    return data.subset(~is_test), data.subset(is_test)


def test_evaluated_users_and_relevance_follow_the_protocol() -> None:
    train, test = fixture_split()
    assert train.items.ids.tolist() == ["x0", "x1", "x2", "x3", "x5", "x4"]
    users = evaluation_users(test, train)
    assert users.tolist() == [0, 1]  # a and b; d's only test item x5 is not in train
    relevant = relevance_matrix(test, train, users)
    assert relevant.toarray().tolist() == [[0, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]]


def test_evaluate_recommendations_against_hand_computed_values() -> None:
    train, test = fixture_split()
    recommended = np.array([[1, 3, 2], [0, 4, -1]])  # rows a, b
    result = evaluate_recommendations(recommended, test, train, k=2, recall_k=3)
    # a: R={2,3}; top-2 [1,3] hits at rank 2; top-3 adds 2.
    #   ndcg@2 = (1/log2 3) / (1 + 1/log2 3) = 0.630930 / 1.630930 = 0.386853
    #   recall@3 = 2 / min(2, 3) = 1; precision@2 = 1/2; AP@2 = (P@2) / min(2, 2) = 0.25
    #   rr = 1/2; hit = 1
    # b: R={0}; hit at rank 1: ndcg 1, recall 1, precision 1/2, AP 1, rr 1, hit 1.
    ndcg_a = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert result["ndcg@2"] == pytest.approx((ndcg_a + 1) / 2)
    assert result["recall@3"] == pytest.approx(1.0)
    assert result["precision@2"] == pytest.approx(0.5)
    assert result["map@2"] == pytest.approx((0.25 + 1) / 2)
    assert result["mrr@2"] == pytest.approx(0.75)
    assert result["hit_rate@2"] == pytest.approx(1.0)
    # coverage: top-2 items {1,3,0,4}; catalogue = items with train rows {0,1,2,3};
    # {0,1,3} -> 3/4 (item 4 = x5 is outside the catalogue).
    assert result["coverage@2"] == pytest.approx(0.75)
    # novelty: train counts [2,2,1,1,0,0] -> floored at 1 -> [2,2,1,1,1,1], total 8;
    # bits item0 = item1 = -log2(2/8) = 2, item3 = item4 = -log2(1/8) = 3;
    # a: (2 + 3) / 2 = 2.5, b: (2 + 3) / 2 = 2.5.
    assert result["novelty@2"] == pytest.approx(2.5)
    assert list(result) == [
        "ndcg@2",
        "recall@3",
        "precision@2",
        "map@2",
        "mrr@2",
        "hit_rate@2",
        "coverage@2",
        "novelty@2",
    ]


def test_evaluate_recommendations_checks_its_input() -> None:
    train, test = fixture_split()
    with pytest.raises(ValueError, match="at least 20"):
        evaluate_recommendations(np.zeros((2, 10), dtype=int), test, train)
    with pytest.raises(ValueError, match="one row per test user"):
        evaluate_recommendations(np.zeros((3, 20), dtype=int), test, train)


class FixedScores(BaseRecommender):
    """Every user gets the same item scores; records what recommend() was asked."""

    name = "fixed"

    def __init__(self, *, scores: tuple[float, ...] = ()) -> None:
        self.scores = scores

    def _fit(self, data: Dataset) -> None:
        self.fit_calls_ = getattr(self, "fit_calls_", 0) + 1

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.tile(np.asarray(self.scores, dtype=np.float32), (histories.shape[0], 1))

    def recommend(self, histories, n, *, candidates=None, users=None):
        self.last_call = {"n": n, "candidates": candidates, "users": users, "rows": histories}
        return super().recommend(histories, n, candidates=candidates, users=users)


def test_evaluate_model_ranks_train_items_and_excludes_history() -> None:
    train, test = fixture_split()
    # Items x5 and x4 score highest but have no train interaction: must not be ranked.
    model = FixedScores(scores=(0.1, 0.9, 0.5, 0.7, 1.0, 2.0))
    result = evaluate_model(model, train, test)
    call = model.last_call
    assert call["n"] == 20
    assert call["candidates"].tolist() == [0, 1, 2, 3]
    assert call["users"].tolist() == [0, 1]
    assert call["rows"].toarray().tolist() == train.matrix()[[0, 1]].toarray().tolist()
    # a (history x0, x1) gets [x3, x2]: both relevant; b (history x1..x3) gets [x0]: relevant.
    assert result.metrics["ndcg@10"] == pytest.approx(1.0)
    assert result.metrics["recall@20"] == pytest.approx(1.0)
    assert result.metrics["precision@10"] == pytest.approx((2 / 10 + 1 / 10) / 2)
    assert result.metrics["coverage@10"] == pytest.approx(3 / 4)  # x0, x2, x3 of 4
    assert result.name == "fixed"
    assert result.fit_seconds >= 0 and result.predict_seconds >= 0


def test_evaluate_model_passes_no_candidates_when_every_item_is_in_train() -> None:
    data = Dataset.from_frames(
        pd.DataFrame(
            {
                "user_id": [u for u in "abcdef" for _ in range(5)],
                "item_id": [f"i{(u + j) % 6}" for u in range(6) for j in range(5)],
                "timestamp": range(30),
            }
        )
    )
    train, test = temporal_user_holdout(data)
    assert (train.item_counts() > 0).all()
    model = FixedScores(scores=tuple(range(6)))
    evaluate_model(model, train, test, name="custom")
    assert model.last_call["candidates"] is None


def test_evaluate_model_without_fitting() -> None:
    train, test = fixture_split()
    model = FixedScores(scores=(0.1, 0.9, 0.5, 0.7, 1.0, 2.0)).fit(train)
    result = evaluate_model(model, train, test, fit=False, name="prefit")
    assert model.fit_calls_ == 1
    assert result.fit_seconds == 0.0
    assert result.name == "prefit"


class Cheater(FixedScores):
    """Breaks the ranking contract in the way chosen by ``mode``."""

    name = "cheater"

    def __init__(self, *, scores: tuple[float, ...] = (), mode: str = "history") -> None:
        super().__init__(scores=scores)
        self.mode = mode

    def recommend(self, histories, n, *, candidates=None, users=None):
        items = np.full((histories.shape[0], n), -1, dtype=np.int64)
        if self.mode == "history":
            items[:, 0] = histories.indices[histories.indptr[:-1]]  # first history item
        else:
            items[:, 0] = 5  # x4, which has no training interaction
        return items, np.zeros(items.shape, dtype=np.float32)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("history", "already in the user.s history"), ("candidates", "outside the candidates")],
)
def test_evaluate_model_rejects_a_model_that_breaks_the_contract(mode, message) -> None:
    train, test = fixture_split()
    with pytest.raises(ValueError, match=message):
        evaluate_model(Cheater(scores=(0,) * 6, mode=mode), train, test)


def synthetic(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        items = rng.choice(
            n_items, size=rng.integers(3, 15), replace=False, p=popularity / popularity.sum()
        )
        rows += [
            (f"u{u}", f"i{i}", int(t))
            for i, t in zip(items, rng.integers(0, 10**6, len(items)), strict=True)
        ]
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def test_run_protocol_reports_every_model_and_the_split() -> None:
    data = synthetic()
    messages: list[str] = []
    counts = data.item_counts().astype(float)
    models = {
        "popular": FixedScores(scores=tuple(counts)),
        "reverse": FixedScores(scores=tuple(-counts)),
    }
    report = run_protocol(models, data, progress=messages.append, name="synthetic")
    train, test = temporal_user_holdout(data, seed=42)
    assert [e.name for e in report.evaluations] == ["popular", "reverse"]
    assert report.dataset["name"] == "synthetic"
    assert report.dataset["interactions"] == data.n_interactions
    assert report.dataset["train_interactions"] == train.n_interactions
    assert report.dataset["test_interactions"] == test.n_interactions
    assert report.dataset["test_users"] == len(evaluation_users(test, train))
    assert report.protocol["test_fraction"] == 0.2 and report.protocol["min_interactions"] == 5
    assert len(messages) == 3 and "popular" in messages[1]
    # Items were drawn with long-tail popularity: ranking the head first beats the tail.
    popular, reverse = report.evaluations
    assert popular.metrics["ndcg@10"] > reverse.metrics["ndcg@10"]
    for evaluation in report.evaluations:
        assert set(evaluation.metrics) == {
            "ndcg@10",
            "recall@20",
            "precision@10",
            "map@10",
            "mrr@10",
            "hit_rate@10",
            "coverage@10",
            "novelty@10",
        }


def test_validation_split_is_the_same_holdout_inside_train() -> None:
    data = synthetic()
    train, _ = temporal_user_holdout(data, seed=42)
    fit_part, validation = validation_split(train, seed=42)
    expected_fit, expected_validation = temporal_user_holdout(train, seed=42)
    assert np.array_equal(fit_part.user_idx, expected_fit.user_idx)
    assert np.array_equal(validation.item_idx, expected_validation.item_idx)
    assert validation.n_interactions > 0
    assert fit_part.n_interactions + validation.n_interactions <= train.n_interactions
