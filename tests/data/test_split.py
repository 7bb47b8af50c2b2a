"""Splits: the protocol's per-user temporal holdout, leave-last-one-out, global time."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.data.split import global_time_split, leave_last_one_out, temporal_user_holdout
from reco.data.vocabulary import Vocabulary
from reco.errors import ConfigurationError, ValidationError


def make_dataset(rows: list[tuple], *, timestamps: bool = True) -> Dataset:
    """rows of (user, item, timestamp)."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    if not timestamps:
        frame = frame.drop(columns="timestamp")
    return Dataset.from_frames(frame)


def pairs(data: Dataset) -> list[tuple[str, str]]:
    """(user, item) external ids of every row, in row order."""
    return list(zip(data.users.ids[data.user_idx], data.items.ids[data.item_idx], strict=True))


def user_rows(user: str, n: int, *, start: int = 0, item_prefix: str = "i") -> list[tuple]:
    """n interactions of one user with items i0.., at times start, start+1, ..."""
    return [(user, f"{item_prefix}{j}", start + j) for j in range(n)]


def test_holdout_takes_the_floor_of_20_percent_latest_rows_per_user() -> None:
    # "filler" rates i0..i19 at one moment, so every test item is also a train item;
    # "e" (4 rows, stays in train) covers filler's own test items i16..i19.
    filler = [("filler", f"i{j}", -1) for j in range(20)]
    rows = filler + user_rows("a", 5) + user_rows("b", 9) + user_rows("c", 14) + user_rows("d", 4)
    rows += [("e", f"i{j}", 0) for j in range(16, 20)]
    train, test = temporal_user_holdout(make_dataset(rows))
    by_user = pd.Series([u for u, _ in pairs(test)]).value_counts().to_dict()
    # a: floor(0.2*5)=1; b: floor(1.8)=1; c: floor(2.8)=2; d: 4 < 5 stays in train;
    # e: 4 < 5 stays in train; filler: floor(0.2*20)=4, all at time -1, so its last 4
    # rows i16..i19.
    assert by_user == {"a": 1, "b": 1, "c": 2, "filler": 4}
    assert [p for p in pairs(test) if p[0] == "filler"] == [
        ("filler", f"i{j}") for j in range(16, 20)
    ]
    assert set(pairs(test)) >= {("a", "i4"), ("b", "i8"), ("c", "i12"), ("c", "i13")}
    assert train.n_interactions + test.n_interactions == len(rows)
    assert {u for u, _ in pairs(train)} == {"a", "b", "c", "d", "e", "filler"}


def test_holdout_is_by_time_not_by_row_order() -> None:
    rows = [("a", "x", 50), ("a", "y", 10), ("a", "z", 40), ("a", "w", 20), ("a", "v", 30)]
    rows += [("b", item, 0) for item in "xyzwv"]
    _, test = temporal_user_holdout(make_dataset(rows))
    assert ("a", "x") in pairs(test)  # the latest by time although first in the file
    assert [p for p in pairs(test) if p[0] == "a"] == [("a", "x")]


def test_equal_timestamps_keep_row_order() -> None:
    rows = [("a", item, 7) for item in "pqrstuvwxy"]  # 10 rows, all at the same time
    rows += [("b", item, 0) for item in "yxwvutsrqp"]  # same items, reversed row order
    _, test = temporal_user_holdout(make_dataset(rows))
    # floor(0.2*10)=2: the last two rows of a (x, y), and of b (q, p); each is a train
    # item of the other user, so none is dropped.
    assert pairs(test) == [("a", "x"), ("a", "y"), ("b", "q"), ("b", "p")]


def test_test_items_never_seen_in_train_are_dropped() -> None:
    rows = user_rows("a", 5) + [("b", "new", 100)] + [("b", f"i{j}", j) for j in range(1, 5)]
    _, test = temporal_user_holdout(make_dataset(rows))
    # a's test item i4 is in b's train rows; b's latest item "new" is nowhere else.
    assert pairs(test) == [("a", "i4")]


def test_splits_share_the_parent_vocabularies() -> None:
    data = make_dataset(user_rows("a", 10) + user_rows("b", 10))
    train, test = temporal_user_holdout(data)
    assert train.items == data.items and test.items == data.items
    assert train.users == data.users and test.users == data.users
    assert train.matrix().shape == test.matrix().shape == (2, 10)


def test_without_timestamps_a_seeded_random_order_stands_in() -> None:
    rows = [(f"u{u}", f"i{j}", None) for u in range(30) for j in range(10)]
    data = make_dataset(rows, timestamps=False)
    assert not data.has_timestamps
    _, test_a = temporal_user_holdout(data, seed=1)
    _, test_b = temporal_user_holdout(data, seed=1)
    _, test_c = temporal_user_holdout(data, seed=2)
    assert pairs(test_a) == pairs(test_b)
    assert pairs(test_a) != pairs(test_c)
    assert test_a.n_interactions == 30 * 2
    # Not just the last rows of the file: the random order picks other positions.
    assert {item for _, item in pairs(test_a)} != {"i8", "i9"}


def test_holdout_rejects_impossible_parameters() -> None:
    data = make_dataset(user_rows("a", 10))
    with pytest.raises(ConfigurationError, match="test_fraction"):
        temporal_user_holdout(data, test_fraction=1.0)
    with pytest.raises(ConfigurationError, match="min_interactions"):
        temporal_user_holdout(data, min_interactions=1)


def test_holdout_keeps_at_least_one_train_row_per_split_user() -> None:
    data = make_dataset(user_rows("a", 5) + user_rows("b", 4))
    train, test = temporal_user_holdout(data, test_fraction=1 - 1e-12)
    # a: floor(5 * (1 - 1e-12)) would be 4 or (with the epsilon) 5; it is capped at
    # 5 - 1 = 4 so i0 stays in train. b (4 < 5) stays in train and holds i0..i3, so
    # a's test items i1..i3 survive and i4 (in no train row) is dropped.
    assert train.user_counts().tolist() == [1, 4]
    assert pairs(test) == [("a", "i1"), ("a", "i2"), ("a", "i3")]


def test_leave_last_one_out() -> None:
    rows = user_rows("a", 3) + user_rows("b", 1, start=10) + user_rows("c", 4)
    train, test = leave_last_one_out(make_dataset(rows))
    # a's last is i2 (also in c's train), c's last is i3 (nowhere else: dropped),
    # b has 1 < 2 interactions and stays in train.
    assert pairs(test) == [("a", "i2")]
    assert train.n_interactions == 3 + 1 + 4 - 2


def test_global_time_split_with_fraction_and_cutoff() -> None:
    rows = [("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "y", 4), ("c", "x", 5)]
    rows += [("b", "z", 6), ("d", "y", 7), ("d", "x", 8), ("a", "new", 9), ("e", "x", 10)]
    data = make_dataset(rows)
    train, test = global_time_split(data, test_fraction=0.3)
    # 10 rows, floor(0.3*10)=3 test: times 8, 9, 10 (item "new" unseen in train: dropped).
    # Cold users keep their test rows: e has no train interaction.
    assert pairs(test) == [("d", "x"), ("e", "x")]
    assert train.n_interactions == 7
    train, test = global_time_split(data, cutoff=6.5)
    assert sorted(pairs(test)) == [("d", "x"), ("d", "y"), ("e", "x")]


def test_global_time_split_keeps_one_moment_together() -> None:
    rows = [("a", "x", 1), ("b", "x", 2), ("c", "x", 2), ("d", "x", 2), ("e", "x", 3)]
    train, test = global_time_split(make_dataset(rows), test_fraction=0.5)
    assert train.n_interactions == 4
    # floor(2.5)=2 test rows wanted; the cutoff lands on time 2, so all three rows at
    # time 2 stay in train and only time 3 is test.
    assert pairs(test) == [("e", "x")]


def test_global_time_split_needs_timestamps() -> None:
    data = make_dataset([("a", "x", None), ("b", "x", None)], timestamps=False)
    with pytest.raises(ValidationError, match="timestamp"):
        global_time_split(data)


def test_holdout_is_vectorised_for_millions_of_rows() -> None:
    rng = np.random.default_rng(0)
    n = 2_000_000
    users = rng.integers(0, 100_000, n).astype(np.int32)
    items = rng.integers(0, 20_000, n).astype(np.int32)
    data = Dataset(
        users=Vocabulary([f"u{u}" for u in range(100_000)]),
        items=Vocabulary([f"i{i}" for i in range(20_000)]),
        user_idx=users,
        item_idx=items,
        timestamps=rng.integers(0, 10**9, n).astype(np.float64),
        weights=np.ones(n, dtype=np.float32),
        event_types=np.full(n, "interaction", dtype=object),
    )
    started = time.perf_counter()
    train, test = temporal_user_holdout(data)
    elapsed = time.perf_counter() - started
    counts = data.user_counts()
    expected = np.where(counts >= 5, np.maximum(1, counts // 5), 0).sum()
    assert train.n_interactions + test.n_interactions <= n
    assert n - train.n_interactions == expected
    assert elapsed < 10, f"splitting {n:,} rows took {elapsed:.1f} s"


def test_fractional_timestamps_split_like_whole_seconds() -> None:
    # Same order of events once as whole seconds, once as fractions: same split.
    rng = np.random.default_rng(3)
    rows = [
        (f"u{u}", f"i{rng.integers(0, 15)}", int(rng.integers(0, 50)))
        for u in range(20)
        for _ in range(12)
    ]
    whole = make_dataset(rows)
    fractional = make_dataset(rows)
    fractional = Dataset(
        users=fractional.users,
        items=fractional.items,
        user_idx=fractional.user_idx,
        item_idx=fractional.item_idx,
        timestamps=fractional.timestamps / 7.0,
        weights=fractional.weights,
        event_types=fractional.event_types,
    )
    for split in (temporal_user_holdout, leave_last_one_out):
        assert pairs(split(whole)[1]) == pairs(split(fractional)[1])
