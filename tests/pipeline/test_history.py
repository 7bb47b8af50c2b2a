"""Histories: aggregation of events, recency order, new events, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.data.vocabulary import Vocabulary
from reco.pipeline.history import Histories, stack_rows


def test_events_aggregate_per_row_and_item():
    h = Histories.from_events(
        3, 5, [0, 0, 0, 2, 2], [1, 2, 1, 4, 3], weights=[1, 1, 2, 1, 1], times=[10, 5, 20, 1, 1]
    )
    assert h.matrix.toarray().tolist() == [
        [0, 3, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1],
    ]
    # The latest time of each (row, item) is kept.
    assert h.times[0, 1] == 20 and h.times[0, 2] == 5
    assert h.lengths().tolist() == [2, 0, 2]
    assert h.last_times()[0] == 20 and np.isnan(h.last_times()[1])


def test_recency_ranks_latest_first_and_ties_keep_event_order():
    h = Histories.from_events(2, 5, [0, 0, 0, 1, 1], [3, 1, 2, 4, 0], times=[5, 9, 1, 7, 7])
    assert h.recency.toarray()[0, [1, 3, 2]].tolist() == [0, 1, 2]
    # Items 4 and 0 share a time: the later event (item 0) is the more recent.
    assert h.recency[1, 0] == 0 and h.recency[1, 4] == 1
    assert h.recent(1).toarray()[0].nonzero()[0].tolist() == [1]


def test_unknown_times_count_as_oldest():
    h = Histories.from_events(1, 3, [0, 0, 0], [0, 1, 2], times=[np.nan, 5, 3])
    assert h.recency.toarray()[0].tolist() == [2, 0, 1]
    assert h.timed


def test_new_events_become_the_most_recent():
    h = Histories.from_events(2, 4, [0, 0], [0, 1], times=[10, 20])
    grown = h.with_events([0, 1], [2, 3], times=[30, 40])
    assert grown.recency.toarray()[0, :3].tolist() == [2, 1, 0]
    assert grown.lengths().tolist() == [3, 1]
    assert h.lengths().tolist() == [2, 0]  # the original is unchanged


def test_seen_follows_the_event_types(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "item_id": ["x", "y", "x"],
            "timestamp": [1, 2, 3],
            "event_type": ["view", "purchase", "view"],
        }
    )
    items = Vocabulary(["x", "y", "z"])
    h = Histories.from_frame(items, ["a", "b", "c"], frame, seen_event_types=["purchase"])
    assert h.seen.toarray().tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    every = Histories.from_frame(items, ["a", "b", "c"], frame)
    assert every.seen.toarray().tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]


def test_from_dataset_takes_the_asked_users_in_order():
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "c", "a"],
            "timestamp": [1, 2, 3, 4],
        }
    )
    data = Dataset.from_frames(frame)
    h = Histories.from_dataset(data, np.array([2, 1]))
    assert h.users.tolist() == [2, 1]
    assert h.lengths().tolist() == [1, 2]


def test_round_trip_through_arrays_is_exact():
    h = Histories.from_events(
        3,
        6,
        [0, 0, 1, 2, 2, 2],
        [5, 1, 2, 0, 3, 4],
        times=[3, np.nan, 2, 1, 1, 9],
        users=[4, -1, 7],
    )
    back = Histories.from_arrays(h.to_arrays("p_"), "p_")
    for name in ("matrix", "times", "recency", "seen"):
        a, b = getattr(h, name), getattr(back, name)
        assert (a.indptr == b.indptr).all() and (a.indices == b.indices).all()
        np.testing.assert_array_equal(a.data, b.data)
    assert back.users.tolist() == [4, -1, 7] and back.timed


def test_empty_and_bad_input():
    empty = Histories.empty(2, 3)
    assert empty.n_rows == 2 and empty.matrix.nnz == 0 and not empty.timed
    with pytest.raises(ValueError, match="outside"):
        Histories.from_events(1, 2, [0], [5])
    with pytest.raises(ValueError, match="one entry per event"):
        Histories.from_events(1, 2, [0], [1], times=[1, 2])


def _same(a: Histories, b: Histories) -> None:
    for name in ("matrix", "times", "recency", "seen"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.shape == right.shape
        np.testing.assert_array_equal(left.toarray(), right.toarray())
    np.testing.assert_array_equal(a.users, b.users)


def test_take_gathers_rows_of_every_matrix_in_the_asked_order(everyone: Histories):
    rows = np.array([5, 0, 5, 17])
    taken = everyone.take(rows)
    for name in ("matrix", "times", "recency", "seen"):
        expected = getattr(everyone, name)[rows].toarray()
        np.testing.assert_array_equal(getattr(taken, name).toarray(), expected)
    np.testing.assert_array_equal(taken.users, everyone.users[rows])


def test_stack_puts_batches_one_after_another(everyone: Histories):
    parts = [everyone.take(np.array([3])), everyone.take(np.array([9, 1])), everyone.take([2])]
    _same(Histories.stack(parts), everyone.take(np.array([3, 9, 1, 2])))


def test_stack_refuses_batches_over_different_items(everyone: Histories):
    other = Histories.empty(1, everyone.n_items + 1)
    with pytest.raises(ValueError, match="one item vocabulary"):
        Histories.stack([everyone.take([0]), other])


def test_recent_keeps_each_rows_latest_nonzero_items():
    rows = np.array([0, 0, 0, 1, 1])
    items = np.array([0, 1, 2, 3, 1])
    weights = np.array([1.0, 0.0, 2.0, 5.0, 4.0], dtype=np.float32)
    histories = Histories.from_events(2, 4, rows, items, weights=weights, times=np.arange(5.0))
    recent = histories.recent(2).toarray()
    # Row 0's two latest are items 2 and 1; item 1 weighs nothing, so only 2 is left.
    np.testing.assert_array_equal(recent, [[0, 0, 2, 0], [0, 4, 0, 5]])


def test_recent_stack_puts_each_suffix_block_under_the_last(everyone: Histories):
    batch = everyone.take(np.array([4, 0, 7]))
    stacked = batch.recent_stack([1, 3, 10])
    assert stacked.shape == (9, everyone.n_items)
    expected = np.vstack([batch.recent(k).toarray() for k in (1, 3, 10)])
    np.testing.assert_array_equal(stacked.toarray(), expected)


def test_stack_rows_puts_the_second_matrix_under_the_first(everyone: Histories):
    top = everyone.take(np.array([3, 1])).matrix
    bottom = everyone.take(np.array([2])).recent_stack([1, 5])
    joined = stack_rows([top, bottom])
    assert joined.shape == (4, everyone.n_items)
    assert joined.has_sorted_indices
    np.testing.assert_array_equal(joined.toarray(), np.vstack([top.toarray(), bottom.toarray()]))
