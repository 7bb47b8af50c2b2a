"""ALSRecommender: fold-in agrees with implicit's recalculate_user, and serves any history."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.als import ALSRecommender

USERS = np.arange(0, 200, 9)


def implicit_twin(model: ALSRecommender) -> AlternatingLeastSquares:
    """An implicit ALS with the same hyper-parameters and our item factors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = AlternatingLeastSquares(
            factors=model.factors,
            regularization=model.regularization,
            alpha=model.alpha,
            num_threads=1,
        )
    twin.item_factors = model.item_factors_.copy()
    return twin


@pytest.mark.parametrize(("alpha", "regularization"), [(1.0, 10.0), (4.0, 0.5)])
def test_fold_in_is_implicits_recalculate_user(
    alpha: float, regularization: float, clustered_data: Dataset
) -> None:
    """Also pins down implicit 0.7's semantics: confidence = alpha * weight, plain L2."""
    model = ALSRecommender(
        factors=16, iterations=5, alpha=alpha, regularization=regularization
    ).fit(clustered_data)
    histories = clustered_data.matrix()[USERS]
    weighted = histories.copy()
    weighted.data = weighted.data * np.linspace(0.5, 3.0, weighted.nnz).astype(np.float32)
    twin = implicit_twin(model)
    for rows in (histories, weighted):
        ours = model.fold_in(rows)
        theirs = twin.recalculate_user(USERS, rows)
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_rankings_match_implicits_recommend_with_recalculate_user(
    clustered_data: Dataset,
) -> None:
    model = ALSRecommender(factors=16, iterations=5).fit(clustered_data)
    histories = clustered_data.matrix()[USERS]
    items, scores = model.recommend(histories, 10)
    ids, values = implicit_twin(model).recommend(
        USERS, histories, N=10, recalculate_user=True, filter_already_liked_items=True
    )
    np.testing.assert_allclose(scores, values, rtol=1e-3, atol=1e-4)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(items, ids, strict=True)])
    assert overlap >= 0.95


def test_train_user_and_unseen_user_with_the_same_history_agree(clustered_data: Dataset) -> None:
    model = ALSRecommender(factors=16, iterations=5).fit(clustered_data)
    row = clustered_data.matrix()[7]
    stranger = csr_matrix((row.data.copy(), row.indices.copy(), row.indptr.copy()), shape=row.shape)
    np.testing.assert_array_equal(model.recommend(row, 10)[0], model.recommend(stranger, 10)[0])
    np.testing.assert_array_equal(
        model.recommend(row, 10)[0], model.recommend(row, 10, users=np.array([-1]))[0]
    )


def test_fresh_events_change_the_answer_at_once(clustered_data: Dataset) -> None:
    model = ALSRecommender(factors=16, iterations=5).fit(clustered_data)
    row = clustered_data.matrix()[11]
    before, _ = model.recommend(row, 10)
    grown = row.toarray()
    grown[0, before[0, :3]] = 1.0
    after, _ = model.recommend(csr_matrix(grown), 10)
    assert not set(before[0, :3].tolist()) & set(after[0].tolist())
    assert not np.array_equal(model.fold_in(row), model.fold_in(csr_matrix(grown)))


def test_empty_history_folds_in_to_zero_factors(clustered_data: Dataset) -> None:
    model = ALSRecommender(factors=8, iterations=2).fit(clustered_data)
    empty = csr_matrix((2, clustered_data.n_items), dtype=np.float32)
    np.testing.assert_array_equal(model.fold_in(empty), np.zeros((2, 8)))


def test_item_factors_are_float32_items_by_factors(clustered_data: Dataset) -> None:
    model = ALSRecommender(factors=12, iterations=3).fit(clustered_data)
    assert model.item_factors_.dtype == np.float32
    assert model.item_factors_.shape == (clustered_data.n_items, 12)


def test_seed_changes_the_factors(clustered_data: Dataset) -> None:
    a = ALSRecommender(factors=8, iterations=3, seed=1).fit(clustered_data)
    b = ALSRecommender(factors=8, iterations=3, seed=2).fit(clustered_data)
    assert not np.array_equal(a.item_factors_, b.item_factors_)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"factors": 0}, "factors must be a positive integer"),
        ({"iterations": 1.5}, "iterations must be a positive integer"),
        ({"regularization": 0.0}, "regularization must be > 0"),
        ({"alpha": -1.0}, "alpha must be > 0"),
    ],
)
def test_bad_params_are_refused(params: dict, message: str, clustered_data: Dataset) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ALSRecommender(**params).fit(clustered_data)
