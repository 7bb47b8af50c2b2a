"""MMR diversity and exploration slots."""

from __future__ import annotations

import numpy as np

from reco.pipeline.diversity import exploration_slots, interleave, mmr, unit_rows


def test_weight_zero_keeps_the_ranking():
    items = np.array([[3, 1, 2, 0]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    vectors = unit_rows(np.eye(4))
    picked, kept = mmr(items, scores, vectors, 3, 0.0)
    assert picked.tolist() == [[3, 1, 2]]
    assert kept.tolist() == [[4.0, 3.0, 2.0]]


def test_mmr_trades_a_near_duplicate_for_a_different_item():
    # Items 0 and 1 share a category; item 2 is of another, a little less relevant.
    vectors = unit_rows(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    items = np.array([[0, 1, 2]])
    scores = np.array([[1.0, 0.95, 0.9]], dtype=np.float32)
    picked, _ = mmr(items, scores, vectors, 2, 0.5)
    assert picked.tolist() == [[0, 2]]


def test_empty_slots_stay_empty():
    vectors = unit_rows(np.eye(3))
    picked, scores = mmr(
        np.array([[2, -1, -1]]), np.array([[1.0, -np.inf, -np.inf]]), vectors, 3, 0.3
    )
    assert picked.tolist() == [[2, -1, -1]]
    assert np.isneginf(scores[0, 1:]).all()


def test_exploration_slots_spare_the_top_and_follow_the_share():
    assert exploration_slots(20, 0.0).size == 0
    slots = exploration_slots(20, 0.1)
    assert len(slots) == 2 and slots.min() >= 3 and slots.max() == 19


def test_interleave_inserts_new_items_and_shifts_the_rest():
    ranked = np.array([[10, 11, 12, 13, 14, 15]])
    explore = np.array([[99, 12]])  # 12 is already listed: only 99 is new
    out, marks = interleave(ranked, explore, np.array([4, 5]))
    assert out.tolist() == [[10, 11, 12, 13, 99, 14]]
    assert marks.tolist() == [[False, False, False, False, True, False]]
