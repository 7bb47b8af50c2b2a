"""AnnIndex: exact search agrees with brute force, IVF/HNSW agree with exact, kinds switch."""

from __future__ import annotations

import numpy as np
import pytest

from reco.errors import ConfigurationError
from reco.models.ann_index import AnnIndex, default_nlist


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Random unit vectors (float32)."""
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """4,000 random unit vectors of length 16."""
    return unit_rows(np.random.default_rng(0), 4000, 16)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    """100 random unit queries of length 16."""
    return unit_rows(np.random.default_rng(1), 100, 16)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row of ``b`` also found in the same row of ``a``."""
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_exact_search_is_brute_force(vectors: np.ndarray, queries: np.ndarray) -> None:
    index = AnnIndex.build(vectors, kind="exact")
    ids, scores = index.search(queries, 10)
    brute = queries @ vectors.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_mostly_the_exact_neighbours(
    kind: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    exact, _ = AnnIndex.build(vectors, kind="exact").search(queries, 10)
    index = AnnIndex.build(vectors, kind=kind)
    assert index.kind == kind
    found, scores = index.search(queries, 10)
    assert overlap(found, exact) >= 0.8, f"{kind} recall@10 too low"
    # Scores of what was found are exact inner products.
    valid = found >= 0
    rows = np.nonzero(valid)[0]
    true_scores = np.einsum("ij,ij->i", queries[rows], vectors[found[valid]])
    np.testing.assert_allclose(scores[valid], true_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_rebuilding_from_the_same_vectors_gives_the_same_answers(
    kind: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    first = AnnIndex.build(vectors, kind=kind, seed=3).search(queries, 15)
    second = AnnIndex.build(vectors.copy(), kind=kind, seed=3).search(queries, 15)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_auto_switches_from_exact_to_ivf_at_the_threshold(vectors: np.ndarray) -> None:
    assert AnnIndex.build(vectors[:999], exact_below=1000).kind == "exact"
    assert AnnIndex.build(vectors[:1000], exact_below=1000).kind == "ivf"
    assert AnnIndex.build(vectors).kind == "exact"  # default threshold is 50,000
    assert AnnIndex.build(vectors, exact_below=0).kind == "ivf"


def test_k_beyond_the_vectors_pads_with_minus_one(vectors: np.ndarray) -> None:
    index = AnnIndex.build(vectors[:5], kind="exact")
    ids, scores = index.search(vectors[:2], 8)
    assert ids.shape == scores.shape == (2, 8)
    assert sorted(ids[0, :5].tolist()) == [0, 1, 2, 3, 4]
    assert (ids[:, 5:] == -1).all()
    assert np.isneginf(scores[:, 5:]).all()


def test_ivf_cells_have_enough_training_points() -> None:
    assert default_nlist(10) == 1
    assert default_nlist(4000) == 102  # 4000 // 39 caps 4 * sqrt(4000) = 252
    assert default_nlist(1_000_000) == 4000


def test_bad_inputs_are_refused(vectors: np.ndarray) -> None:
    with pytest.raises(ConfigurationError, match="unknown index kind"):
        AnnIndex.build(vectors, kind="annoy")
    with pytest.raises(ConfigurationError, match="exact_below"):
        AnnIndex.build(vectors, exact_below=-1)
    with pytest.raises(ValueError, match="empty"):
        AnnIndex.build(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        AnnIndex.build(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        AnnIndex.build(np.array([[1.0, np.nan]], np.float32))
    index = AnnIndex.build(vectors, kind="exact")
    with pytest.raises(ValueError, match="columns"):
        index.search(np.zeros((1, 3), np.float32), 5)
    with pytest.raises(ValueError, match="k must be"):
        index.search(vectors[:1], 0)
    ids, scores = index.search(np.zeros((0, 16), np.float32), 5)
    assert ids.shape == scores.shape == (0, 5)
