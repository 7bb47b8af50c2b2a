"""ItemKNNRecommender: agrees with implicit's own item-item models, and checks its params."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.itemknn import ItemKNNRecommender

USERS = np.array([0, 5, 17, 42, 99, 150])


def implicit_model(similarity: str, k: int, data: Dataset):
    """implicit's model of the same kind, fitted on the same matrix."""
    if similarity == "bm25":
        model = BM25Recommender(K=k, K1=1.2, B=0.75, num_threads=1)
    else:
        model = CosineRecommender(K=k, num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data.matrix(), show_progress=False)
    return model


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_recommendations_match_implicit(similarity: str, clustered_data: Dataset) -> None:
    ours = ItemKNNRecommender(k=20, similarity=similarity).fit(clustered_data)
    theirs = implicit_model(similarity, 20, clustered_data)
    histories = clustered_data.matrix()[USERS]
    items, scores = ours.recommend(histories, 10)
    for row, user in enumerate(USERS):
        ids, values = theirs.recommend(int(user), histories[row], N=10)
        np.testing.assert_allclose(scores[row], values, rtol=1e-5)
        # Where a score is tied, either order is right; elsewhere the items must agree.
        gaps = np.abs(values[:, None] - values[None, :]) + np.eye(len(values))
        untied = (gaps > 1e-5 * np.abs(values)[:, None]).all(axis=1)
        assert untied.sum() >= 5
        np.testing.assert_array_equal(items[row][untied], ids[untied])


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_similarity_is_implicits_as_float32_csr(similarity: str, clustered_data: Dataset) -> None:
    ours = ItemKNNRecommender(k=15, similarity=similarity).fit(clustered_data)
    theirs = implicit_model(similarity, 15, clustered_data)
    assert isinstance(ours.similarity_, csr_matrix)
    assert ours.similarity_.dtype == np.float32
    assert ours.similarity_.shape == (clustered_data.n_items, clustered_data.n_items)
    assert np.diff(ours.similarity_.indptr).max() <= 15
    np.testing.assert_allclose(
        ours.similarity_.toarray(), theirs.similarity.toarray(), rtol=1e-6, atol=1e-7
    )


def test_an_unseen_user_is_scored_from_their_history(clustered_data: Dataset) -> None:
    model = ItemKNNRecommender(k=20).fit(clustered_data)
    row = clustered_data.matrix()[3]
    stranger = csr_matrix((row.data, row.indices, row.indptr), shape=row.shape)
    np.testing.assert_array_equal(model.recommend(stranger, 10)[0], model.recommend(row, 10)[0])
    # One fresh event changes the answer at once, and the new item is not recommended.
    fresh_item = int(model.recommend(row, 1)[0][0, 0])
    grown = row.toarray()
    grown[0, fresh_item] = 1.0
    items, _ = model.recommend(csr_matrix(grown), 10)
    assert fresh_item not in items[0]


def test_unknown_similarity_lists_the_choices(clustered_data: Dataset) -> None:
    with pytest.raises(ConfigurationError, match=r"'jaccard'.*cosine, bm25"):
        ItemKNNRecommender(similarity="jaccard").fit(clustered_data)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_is_refused(k: object, clustered_data: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="positive integer"):
        ItemKNNRecommender(k=k).fit(clustered_data)  # type: ignore[arg-type]


def test_bad_bm25_params_are_refused(clustered_data: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="bm25_b"):
        ItemKNNRecommender(similarity="bm25", bm25_b=1.5).fit(clustered_data)
