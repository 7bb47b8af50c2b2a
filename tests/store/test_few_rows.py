"""The plain-Python path for small batches gives exactly what the pandas path gives:
the same rows and dedupe keys, the same refusals (with the same messages), and the
same stored rows on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from reco.data import schema
from reco.data.schema import Frames
from reco.errors import ValidationError
from reco.store import events, ingest, prepare, repository
from reco.store.events import append_events, events_frame
from reco.store.prepare import event_rows, few_interaction_rows, prepare_interactions

FIXED_NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _full_rows(frame: pd.DataFrame) -> tuple[list[tuple], int]:
    rows = prepare_interactions(frame, source="test")
    return list(rows.all_rows()), rows.received


# Frames the small path must take itself (and agree on).
TAKEN = {
    "canonical": schema.normalize_interactions(
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u2", "naïve ☕", " padded "],
                "item_id": ["i1", "i1", "i2", "a,b", 'say "hi"'],
                "timestamp": pd.array([5, 5, None, -3, 2**40], dtype="Int64"),
                "value": [1.0, 2.0, np.nan, np.inf, -0.0],
                "event_type": ["view", "view", "click", "view", "x"],
                "event_id": [None, None, None, "e1", None],
            }
        )
    ),
    "minimal_ints": pd.DataFrame({"user_id": [1, 2, 1], "item_id": [10, 20, 10]}),
    "object_mixed": pd.DataFrame(
        {
            "user_id": ["u1", 7, np.int64(8)],
            "item_id": ["i1", "i2", "i3"],
            "timestamp": [1_600_000_000, None, 3.0],
            "value": [1, None, np.float32(0.5)],
            "event_type": [None, "like", np.nan],
            "event_id": [None, 12, "e-1"],
            "ignored": ["x", "y", "z"],
        }
    ),
    "float_stamps": pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["i", "i"], "timestamp": [1.7e9, np.nan]}
    ),
    "int_values": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "value": [4]}),
    "nullable_values": pd.DataFrame(
        {
            "user_id": pd.array(["u", "v"], dtype="string"),
            "item_id": ["i", "i"],
            "value": pd.array([None, 2], dtype="Int64"),
            "timestamp": np.array([1, 2], dtype=np.int32),
        }
    ),
    "repeats_by_event_id": pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u1"],
            "item_id": ["i1", "i2", "i1", "i1"],
            "event_id": ["e1", "e1", "e2", None],
        }
    ),
    "empty": schema.empty_interactions(),
}

# Frames the small path leaves to pandas (types it does not convert itself).
LEFT = {
    "datetimes": pd.DataFrame(
        {
            "user_id": ["u"],
            "item_id": ["i"],
            "timestamp": pd.to_datetime(["2023-11-14T22:13:20Z"]),
        }
    ),
    "text_numbers": pd.DataFrame(
        {"user_id": ["u"], "item_id": ["i"], "timestamp": ["1700000000"], "value": ["4.5"]}
    ),
    "float_ids": pd.DataFrame({"user_id": [1.0], "item_id": ["i"]}),
    "bool_values": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "value": [True]}),
}

# Frames with problems: the small path hands them over, the full path names them.
BAD = {
    "missing_column": pd.DataFrame({"user": ["u"], "item_id": ["i"]}),
    "missing_ids": pd.DataFrame({"user_id": ["u", None], "item_id": [None, "i"]}),
    "empty_and_nul": pd.DataFrame({"user_id": ["", "u\x00"], "item_id": ["i", "i"]}),
    "too_long": pd.DataFrame({"user_id": ["x" * 513], "item_id": ["i"]}),
    "empty_event_type": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": [""]}),
    "fractional_time": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1.5]}),
    "infinite_time": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [np.inf]}),
    "word_time": pd.DataFrame(
        {"user_id": ["u", "v"], "item_id": ["i", "i"], "timestamp": [1, "soon"]}
    ),
    "word_value": pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "value": ["lots"]}),
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_the_small_path_gives_the_rows_of_the_full_path(name):
    frame = TAKEN[name]
    few = few_interaction_rows(frame)
    assert few is not None, "the small path should take this frame"
    assert (few.rows, few.received) == _full_rows(frame)


@pytest.mark.parametrize("name", list(LEFT))
def test_types_it_does_not_convert_are_left_to_the_full_path(name):
    assert few_interaction_rows(LEFT[name]) is None
    _full_rows(LEFT[name])  # and those are valid


@pytest.mark.parametrize("name", list(BAD))
def test_bad_frames_are_refused_by_the_full_path_with_its_messages(store, name):
    frame = BAD[name]
    assert few_interaction_rows(frame) is None
    with pytest.raises(ValidationError) as expected:
        prepare_interactions(frame, source="bad.csv")
    with pytest.raises(ValidationError) as caught:
        ingest(store, Frames(frame), source="bad.csv")
    assert caught.value.problems == expected.value.problems
    assert str(caught.value) == str(expected.value)


def test_more_rows_than_few_go_the_full_way():
    frame = pd.DataFrame({"user_id": ["u"] * (prepare.FEW_ROWS + 1), "item_id": ["i"] * 1001})
    assert few_interaction_rows(frame) is None
    assert few_interaction_rows(frame.iloc[: prepare.FEW_ROWS]) is not None


def _random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A small messy frame: ids of several dtypes, missing cells, repeats, awkward text,
    and now and then a broken cell."""
    pool = ["u1", "u2", "naïve", "a,b", "tab\there", "", "x" * 600, "nul\x00", 5, None]
    weights = np.array([30, 30, 10, 10, 5, 1, 1, 1, 10, 2], dtype=float)
    pick = lambda: pool[rng.choice(len(pool), p=weights / weights.sum())]  # noqa: E731
    columns: dict[str, object] = {
        "user_id": [pick() for _ in range(n)],
        "item_id": [f"i{rng.integers(0, 4)}" if rng.random() < 0.95 else pick() for _ in range(n)],
    }
    if rng.random() < 0.8:
        kind = rng.integers(0, 3)
        if kind == 0:
            columns["timestamp"] = pd.array(
                [None if rng.random() < 0.2 else int(rng.integers(0, 3)) for _ in range(n)],
                dtype="Int64",
            )
        elif kind == 1:
            # Now and then a fraction of a second, which the rules refuse.
            columns["timestamp"] = [
                np.nan if rng.random() < 0.2 else rng.integers(0, 3) + 0.5 * (rng.random() < 0.05)
                for _ in range(n)
            ]
        else:
            columns["timestamp"] = [
                None if rng.random() < 0.2 else int(rng.integers(0, 3)) for _ in range(n)
            ]
    if rng.random() < 0.7:
        columns["value"] = [
            None if rng.random() < 0.3 else float(rng.integers(0, 3)) for _ in range(n)
        ]
    if rng.random() < 0.5:
        kinds = ["view", "like", ""]
        columns["event_type"] = [
            None if rng.random() < 0.3 else kinds[rng.integers(0, 3 if rng.random() < 0.1 else 2)]
            for _ in range(n)
        ]
    if rng.random() < 0.5:
        columns["event_id"] = [
            None if rng.random() < 0.5 else f"e{rng.integers(0, 5)}" for _ in range(n)
        ]
    return pd.DataFrame(columns)


def test_random_frames_agree_with_the_full_path():
    rng = np.random.default_rng(7)
    taken = 0
    for trial in range(400):
        frame = _random_frame(rng, int(rng.integers(1, 12)))
        few = few_interaction_rows(frame)
        try:
            full = _full_rows(frame)
        except ValidationError:
            assert few is None, f"trial {trial}: the small path accepted a bad frame"
            continue
        if few is not None:
            taken += 1
            assert (few.rows, few.received) == full, f"trial {trial}"
    assert taken > 100  # the small path really was exercised


def _random_records(rng: np.random.Generator, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        record: dict[str, object] = {
            "user_id": ["u1", "u2", 3, "naïve ☕"][rng.integers(0, 4)],
            "item_id": f"i{rng.integers(0, 3)}",
        }
        if rng.random() < 0.7:
            record["timestamp"] = [
                1_700_000_000,
                1_700_000_000.9,
                "2023-11-14T22:13:20Z",
                None,
            ][rng.integers(0, 4)]
        if rng.random() < 0.5:
            record["value"] = [4, 2.5, None][rng.integers(0, 3)]
        if rng.random() < 0.5:
            record["event_type"] = ["view", "like"][rng.integers(0, 2)]
        if rng.random() < 0.4:
            record["event_id"] = f"e{rng.integers(0, 4)}"
        records.append(record)
    return records


def test_records_get_the_rows_and_keys_of_the_frame_path():
    rng = np.random.default_rng(11)
    for _ in range(200):
        records = _random_records(rng, int(rng.integers(1, 10)))
        checked = events._checked(records)
        few = event_rows(
            checked.users,
            checked.items,
            checked.timestamps,
            checked.values,
            checked.event_types,
            checked.event_ids,
        )
        assert (few.rows, few.received) == _full_rows(events_frame(records))


def _stored(engine) -> list[tuple]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                'SELECT id, dedupe_key, event_id, user_id, item_id, "timestamp", value, '
                "event_type, source, ingested_at FROM interactions ORDER BY id"
            )
        ).all()
    return [tuple(row) for row in rows]


def test_both_paths_store_identical_rows(store, monkeypatch):
    monkeypatch.setattr(repository, "_now", lambda: FIXED_NOW)
    frame = TAKEN["object_mixed"]
    records = _random_records(np.random.default_rng(3), 300)
    for record in records:
        if record.get("timestamp") is None:
            record["timestamp"] = 1_700_000_123  # "now" would differ between the runs

    def write() -> list:
        reports = [ingest(store, Frames(frame), source="file.csv")]
        reports += [ingest(store, Frames(TAKEN["canonical"]), source="file.csv")]
        results = [
            append_events(store, batch, source="api")
            for batch in (records[:1], records[1:120], records[120:], records[:50])
        ]
        return [(r.interactions_added, r.duplicates_skipped) for r in reports] + results

    fast_results = write()
    fast_rows = _stored(store)
    with store.begin() as connection:
        connection.execute(text("DELETE FROM interactions"))

    monkeypatch.setattr(prepare, "FEW_ROWS", 0)
    monkeypatch.setattr(events, "FEW_ROWS", 0)
    bulk_results = write()
    bulk_rows = _stored(store)

    assert fast_results == bulk_results
    assert len(fast_rows) == len(bulk_rows) > 0
    # Ids continue after the deleted rows; everything else is the same, row for row.
    assert [r[1:] for r in fast_rows] == [r[1:] for r in bulk_rows]
    assert all(b[0] > fast_rows[-1][0] for b in bulk_rows)
    stamps = {r[-1] for r in fast_rows + bulk_rows}
    assert len(stamps) == 1  # ingested_at written the same way by both paths
    assert any(r[6] is None for r in fast_rows) and any(
        isinstance(r[6], float) and math.isinf(r[6]) for r in fast_rows
    )
