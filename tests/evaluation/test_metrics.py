"""Ranking metrics against values computed by hand (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from reco.evaluation.metrics import (
    catalog_coverage_at_k,
    hit_rate_at_k,
    hits_at_k,
    map_at_k,
    mrr_at_k,
    n_relevant,
    ndcg_at_k,
    novelty_at_k,
    precision_at_k,
    recall_at_k,
)

N_ITEMS = 10
K = 4
# Rows: u0 two hits at ranks 2 and 4; u1 one hit at rank 1, then empty slots;
# u2 no relevant item (undefined); u3 six relevant items, hits at ranks 2 and 4;
# u4 one relevant item, never recommended.
RECOMMENDED = np.array(
    [
        [0, 1, 2, 3, 4],
        [5, 4, -1, -1, -1],
        [2, 0, 1, 3, 4],
        [1, 0, 3, 2, 4],
        [6, 7, 8, 9, 0],
    ]
)
RELEVANT_SETS = [{1, 3}, {5}, set(), {0, 2, 5, 7, 8, 9}, {1}]

L3 = math.log2(3)  # discount of rank 2 is 1 / log2(2 + 1)
L5 = math.log2(5)  # discount of rank 4 is 1 / log2(4 + 1)


def relevance(sets: list[set[int]], n_items: int = N_ITEMS) -> csr_matrix:
    rows = [u for u, items in enumerate(sets) for _ in items]
    cols = [i for items in sets for i in sorted(items)]
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


RELEVANT = relevance(RELEVANT_SETS)


def check(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-12, equal_nan=True)


def test_hits_mark_relevant_ranks_and_ignore_empty_slots() -> None:
    hits = hits_at_k(RECOMMENDED, RELEVANT, K)
    assert hits.tolist() == [
        [False, True, False, True],
        [True, False, False, False],
        [False, False, False, False],
        [False, True, False, True],
        [False, False, False, False],
    ]
    assert n_relevant(RELEVANT).tolist() == [2, 1, 0, 6, 1]


def test_ndcg_binary_gains_ideal_over_min_relevant_k() -> None:
    # u0: DCG = 1/log2 3 + 1/log2 5; IDCG over min(2, 4) = 2 ranks = 1 + 1/log2 3.
    # u1: DCG = 1 (rank 1); IDCG = 1.
    # u3: same DCG as u0; IDCG over min(6, 4) = 4 ranks = 1 + 1/log2 3 + 1/2 + 1/log2 5.
    # u4: DCG = 0. With 1/log2 3 = 0.630930 and 1/log2 5 = 0.430677:
    # u0 = 1.061607 / 1.630930 = 0.650921; u3 = 1.061607 / 2.561607 = 0.414430.
    u0 = (1 / L3 + 1 / L5) / (1 + 1 / L3)
    u3 = (1 / L3 + 1 / L5) / (1 + 1 / L3 + 1 / 2 + 1 / L5)
    check(ndcg_at_k(RECOMMENDED, RELEVANT, K), [u0, 1.0, math.nan, u3, 0.0])
    assert u0 == pytest.approx(0.650921, abs=1e-6)
    assert u3 == pytest.approx(0.414430, abs=1e-6)


def test_recall_divides_by_min_relevant_k() -> None:
    # u0: 2 hits / min(2, 4) = 1; u1: 1 / 1; u3: 2 hits / min(6, 4) = 0.5 (not 2/6); u4: 0.
    check(recall_at_k(RECOMMENDED, RELEVANT, K), [1.0, 1.0, math.nan, 0.5, 0.0])


def test_precision_divides_by_k() -> None:
    # u0: 2/4; u1: 1/4 (empty slots are misses); u3: 2/4; u4: 0/4.
    check(precision_at_k(RECOMMENDED, RELEVANT, K), [0.5, 0.25, math.nan, 0.5, 0.0])


def test_average_precision_divides_by_min_relevant_k() -> None:
    # u0: hits at 2 and 4: (P@2 + P@4) / min(2, 4) = (1/2 + 2/4) / 2 = 0.5
    # u1: hit at 1: P@1 / 1 = 1
    # u3: hits at 2 and 4: (1/2 + 2/4) / min(6, 4) = 1 / 4 = 0.25
    check(map_at_k(RECOMMENDED, RELEVANT, K), [0.5, 1.0, math.nan, 0.25, 0.0])


def test_reciprocal_rank_and_hit_rate() -> None:
    # first hits: u0 rank 2, u1 rank 1, u3 rank 2, u4 none.
    check(mrr_at_k(RECOMMENDED, RELEVANT, K), [0.5, 1.0, math.nan, 0.5, 0.0])
    check(hit_rate_at_k(RECOMMENDED, RELEVANT, K), [1.0, 1.0, math.nan, 1.0, 0.0])


def test_metrics_only_look_at_the_first_k_columns() -> None:
    # At k=1 only u1's rank-1 hit counts: NDCG 1, recall 1/min(1,1); others 0.
    check(ndcg_at_k(RECOMMENDED, RELEVANT, 1), [0.0, 1.0, math.nan, 0.0, 0.0])
    # At k=5 u4 has item 0 at rank 5, not relevant (u4 wants 1); u0 gains nothing either.
    check(recall_at_k(RECOMMENDED, RELEVANT, 5), [1.0, 1.0, math.nan, 2 / 5, 0.0])


def test_catalog_coverage_counts_distinct_catalogue_items_in_top_k() -> None:
    # k=2 top items: u0 {0,1}, u1 {5,4}, u2 {2,0}, u3 {1,0}, u4 {6,7}
    # union {0,1,2,4,5,6,7} = 7 of 10 items.
    assert catalog_coverage_at_k(RECOMMENDED, 2, N_ITEMS) == pytest.approx(0.7)
    # Catalogue = items 0..4 only: {0,1,2,4} of 5; items 5..7 are outside and don't count.
    mask = np.arange(N_ITEMS) < 5
    assert catalog_coverage_at_k(RECOMMENDED, 2, mask) == pytest.approx(0.8)
    # k=4 reaches every item 0..9.
    assert catalog_coverage_at_k(RECOMMENDED, 4, N_ITEMS) == 1.0


def test_novelty_is_mean_self_information_of_recommended_items() -> None:
    # popularity [8, 4, 2, 2]: shares 1/2, 1/4, 1/8, 1/8 -> bits 1, 2, 3, 3.
    popularity = np.array([8, 4, 2, 2])
    recommended = np.array([[0, 1], [2, -1], [-1, -1]])
    # u0: (1 + 2) / 2; u1: 3 (the empty slot is skipped); u2: nothing recommended.
    check(novelty_at_k(recommended, 2, popularity), [1.5, 3.0, math.nan])


def test_novelty_counts_an_item_without_training_interactions_as_seen_once() -> None:
    # popularity [6, 0, 1] -> counts [6, 1, 1], total 8: item 1 and 2 are 1/8 -> 3 bits.
    check(novelty_at_k(np.array([[1, 2]]), 2, np.array([6, 0, 1])), [3.0])


def test_relevance_weights_are_binary() -> None:
    weighted = RELEVANT.copy()
    weighted.data = np.arange(1, len(weighted.data) + 1, dtype=np.float64) * 2.5
    check(ndcg_at_k(RECOMMENDED, weighted, K), ndcg_at_k(RECOMMENDED, RELEVANT, K))


@pytest.mark.parametrize(
    ("recommended", "relevant", "k", "message"),
    [
        (RECOMMENDED[:, :3], RELEVANT, 4, "fewer than k=4"),
        (RECOMMENDED[:4], RELEVANT, 4, "rows"),
        (np.array([[1, 1, 2, 3]] * 5), RELEVANT, 4, "same item twice"),
        (np.array([[10, 1, 2, 3]] * 5), RELEVANT, 4, "item index 10"),
        (RECOMMENDED.astype(float), RELEVANT, 4, "integer"),
        (np.array([[-2, 1, 2, 3]] * 5), RELEVANT, 4, "-1"),
        (RECOMMENDED, RELEVANT.toarray(), 4, "sparse"),
        (RECOMMENDED, RELEVANT, 0, "positive integer"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(recommended, relevant, k, message) -> None:
    with pytest.raises(ValueError, match=message):
        ndcg_at_k(recommended, relevant, k)


def test_repeated_empty_slots_are_allowed() -> None:
    recommended = np.array([[3, -1, -1, -1]])
    check(recall_at_k(recommended, relevance([{3, 4}], 5), 4), [0.5])
