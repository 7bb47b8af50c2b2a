"""Ingest and load: a faithful round trip, deduplication, all-or-nothing batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, inspect, text

from reco.data import schema
from reco.data.schema import Frames
from reco.errors import RecoError, ValidationError
from reco.store import (
    counts,
    ingest,
    load_frames,
    postgres_bulk,
    prepare,
    repository,
    sqlite_bulk,
)
from reco.store.db import is_postgres

AWKWARD_IDS = [
    "a,b",
    'say "hi"',
    "naïve ☕ 用户",
    "tab\there",
    "new\nline",
    " padded ",
    "back\\slash",
]


def _interactions(n: int, *, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 50, n)],
            "item_id": [f"i{x}" for x in rng.integers(0, 80, n)],
            "timestamp": np.arange(n, dtype=np.int64) + 1_600_000_000 + offset,
            "value": rng.random(n),
        }
    )
    return schema.normalize_interactions(frame)


def assert_same_interactions(loaded: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same canonical columns, dtypes and values (missing event ids are None)."""
    pd.testing.assert_frame_equal(loaded, expected, check_dtype=True)
    assert all(e is None or isinstance(e, str) for e in loaded[schema.EVENT_ID])


def _indexes(engine: Engine) -> list[str]:
    return sorted(i["name"] for i in inspect(engine).get_indexes("interactions"))


@pytest.fixture(params=["few", "row_by_row", "rebuild"])
def load_path(request, monkeypatch) -> str:
    """Run a test through every insert path: the plain-Python path for small batches,
    the bulk path with index maintenance, and bulk load into an empty table with the
    indexes rebuilt (the bulk paths forced with tiny thresholds)."""
    if request.param != "few":
        monkeypatch.setattr(prepare, "FEW_ROWS", 0)
    if request.param == "rebuild":
        monkeypatch.setattr(sqlite_bulk, "REBUILD_MIN_ROWS", 1)
        monkeypatch.setattr(postgres_bulk, "REBUILD_MIN_ROWS", 1)
    else:
        monkeypatch.setattr(sqlite_bulk, "REBUILD_MIN_ROWS", 10**12)
        monkeypatch.setattr(postgres_bulk, "REBUILD_MIN_ROWS", 10**12)
    return request.param


def test_round_trip_keeps_ids_nulls_values_and_order(store, load_path):
    n = len(AWKWARD_IDS)
    frame = pd.DataFrame(
        {
            "user_id": AWKWARD_IDS,
            "item_id": list(reversed(AWKWARD_IDS)),
            "timestamp": pd.array([5, None, 3, None, 1, 2, 2**40], dtype="Int64"),
            "value": [1.5, np.nan, 0.0, -2.25, np.nan, 1e-300, 4.0],
            "event_type": ["rating"] * (n - 1) + ["click, really"],
            "event_id": [None, "ev-1", None, 'ev "2"', None, None, None],
        }
    )
    expected = schema.normalize_interactions(frame)
    report = ingest(store, Frames(frame), source="awkward.csv")
    assert (report.interactions_added, report.duplicates_skipped) == (n, 0)

    loaded = load_frames(store).interactions
    assert_same_interactions(loaded, expected)
    assert loaded[schema.TIMESTAMP].isna().tolist() == [
        False,
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    assert _indexes(store) == [
        "ix_interactions_item_id",
        "ix_interactions_user_id_id",
        "ix_interactions_user_id_timestamp",
        "uq_interactions_dedupe_key",
    ]


def test_reingesting_the_same_file_adds_nothing(store, load_path):
    frame = _interactions(300)
    first = ingest(store, Frames(frame), source="events.csv")
    second = ingest(store, Frames(frame), source="events.csv")
    assert (first.interactions_added, first.duplicates_skipped) == (300, 0)
    assert (second.interactions_added, second.duplicates_skipped) == (0, 300)
    assert counts(store)["interactions"] == 300
    # The rebuilt unique index still refuses duplicates after a bulk load.
    third = ingest(store, Frames(frame.iloc[:10]), source="again.csv")
    assert third.interactions_added == 0


def test_a_batch_appends_only_its_new_events_in_order(store):
    old = _interactions(100)
    ingest(store, Frames(old), source="a.csv")
    new = _interactions(50, seed=1, offset=10_000)
    mixed = pd.concat([new.iloc[:25], old.iloc[:40], new.iloc[25:]], ignore_index=True)
    report = ingest(store, Frames(mixed), source="b.csv")
    assert (report.interactions_added, report.duplicates_skipped) == (50, 40)
    loaded = load_frames(store).interactions
    assert_same_interactions(loaded, pd.concat([old, new], ignore_index=True))


def test_duplicates_inside_one_batch_are_stored_once(store, frames_of, load_path):
    rows = [
        ("u1", "i1", 10, 1.0),
        ("u1", "i1", 10, 5.0),  # same event, corrected value: still the same event
        ("u1", "i1", 11, 1.0),  # another time: another event
        ("u1", "i1", None, 1.0),
        ("u1", "i1", None, 1.0),  # no timestamp twice: one event
        ("u1", "i1", 10, 1.0, "click"),  # another event type: another event
    ]
    report = ingest(store, frames_of(rows), source="dups.csv")
    assert (report.interactions_added, report.duplicates_skipped) == (4, 2)
    loaded = load_frames(store).interactions
    assert loaded["value"].tolist()[0] == 1.0  # the first occurrence wins


def test_event_ids_decide_identity_when_given(store, frames_of):
    rows = [
        ("u1", "i1", 10, 1.0, "view", "e1"),
        ("u2", "i2", 20, 1.0, "view", "e1"),  # same id: a retry of e1
        ("u1", "i1", 10, 1.0, "view", "e2"),  # same content, new id: a new event
        ("u1", "i1", 10, 1.0, "view", None),  # no id: keyed by content
    ]
    report = ingest(store, frames_of(rows), source="api")
    assert (report.interactions_added, report.duplicates_skipped) == (3, 1)
    loaded = load_frames(store).interactions
    assert loaded["event_id"].tolist()[:2] == ["e1", "e2"]
    assert pd.isna(loaded["event_id"].iloc[2])


def test_items_and_users_round_trip_with_attributes(store, frames_of):
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i,2"],
            "title": ["Toy Story (1995)", 'The "Quote"'],
            "categories": ["Animation|Children's|Comedy", "Drama"],
            "year": [1995, 1996],
            "language": ["en", None],
        }
    )
    users = pd.DataFrame({"user_id": ["u1"], "device": ["ios"], "country": ["FR"]})
    report = ingest(store, frames_of([("u1", "i1", 1)], items=items, users=users), source="m")
    assert (report.items_upserted, report.users_upserted) == (2, 1)

    loaded = load_frames(store)
    got_items = loaded.items.set_index("item_id")
    assert got_items.loc["i1", "categories"] == "Animation|Children's|Comedy"
    assert got_items.loc["i,2", "title"] == 'The "Quote"'
    assert got_items.loc["i1", "year"] == 1995
    assert got_items.loc["i1", "language"] == "en"
    assert pd.isna(got_items.loc["i,2", "language"])
    assert got_items["available"].tolist() == [True, True]
    assert loaded.users.to_dict("records") == [{"user_id": "u1", "device": "ios", "country": "FR"}]
    assert counts(store) == {"users": 1, "items": 2, "interactions": 1}


def test_upsert_replaces_given_cells_keeps_empty_ones_and_merges_attributes(store, frames_of):
    first = pd.DataFrame(
        {"item_id": ["i1"], "title": ["Old"], "categories": ["A"], "year": [1990], "lang": ["en"]}
    )
    ingest(store, frames_of([], items=first), source="v1")
    second = pd.DataFrame(
        {
            "item_id": ["i1", "i1", "i2"],
            "title": ["Ignored", "New", "Other"],  # the last row of an id wins
            "categories": [None, None, "B"],
            "available": ["yes", "no", None],
            "year": [1991, 1991, None],
        }
    )
    report = ingest(store, frames_of([], items=second), source="v2")
    assert report.items_upserted == 2
    got = load_frames(store).items.set_index("item_id")
    assert got.loc["i1", "title"] == "New"
    assert got.loc["i1", "categories"] == "A"  # empty cell: kept
    assert not got.loc["i1", "available"]
    assert got.loc["i2", "available"]  # empty cell on a new item: available
    assert got.loc["i1", "year"] == 1991
    assert got.loc["i1", "lang"] == "en"  # attribute absent from the batch: kept


def test_an_empty_store_loads_as_empty_canonical_frames(store):
    frames = load_frames(store)
    assert len(frames.interactions) == 0
    assert list(frames.interactions.columns) == list(schema.INTERACTION_COLUMNS)
    assert frames.items is None and frames.users is None
    assert counts(store) == {"users": 0, "items": 0, "interactions": 0}


def test_an_id_over_512_characters_is_refused_before_writing(store, frames_of):
    ingest(store, frames_of([("u0", "i0", 1)]), source="ok.csv")
    rows = [("u1", "i1", 1), ("u2", "i2", 2), ("x" * 10_000, "i3", 3)]
    with pytest.raises(ValidationError) as caught:
        ingest(store, frames_of(rows), source="long.csv")
    message = str(caught.value)
    assert "long.csv" in message and "row 3" in message and "user_id" in message
    assert "10000 characters" in message and "512" in message
    assert counts(store)["interactions"] == 1


def test_missing_empty_and_nul_ids_are_listed_together(store, frames_of):
    rows = [("u1", None, 1), ("", "i2", 2), ("u\x003", "i3", 3)]
    with pytest.raises(ValidationError) as caught:
        ingest(store, frames_of(rows), source="bad.csv")
    problems = caught.value.problems
    assert len(problems) == 3
    assert any("row 1, column item_id" in p and "missing" in p for p in problems)
    assert any("row 2, column user_id" in p and "empty" in p for p in problems)
    assert any("row 3, column user_id" in p and "NUL" in p for p in problems)
    assert counts(store)["interactions"] == 0


def test_bad_available_flags_are_refused(store, frames_of):
    items = pd.DataFrame({"item_id": ["i1", "i2"], "available": ["yes", "maybe"]})
    with pytest.raises(ValidationError, match="row 2, column available: 'maybe'"):
        ingest(store, frames_of([], items=items), source="items.csv")
    assert counts(store)["items"] == 0


def _install_failing_trigger(engine: Engine) -> None:
    """Make the database itself refuse any interaction of user 'boom'."""
    with engine.begin() as connection:
        if is_postgres(connection):
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.user_id = 'boom' THEN RAISE EXCEPTION 'boom refused'; "
                    "END IF; RETURN NEW; END $$"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON interactions "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON interactions "
                    "WHEN NEW.user_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
                )
            )


def test_a_failure_in_the_last_row_changes_nothing(store, load_path, monkeypatch):
    monkeypatch.setattr(sqlite_bulk, "CHUNK_ROWS", 7)  # fail several chunks in
    _install_failing_trigger(store)
    if load_path != "rebuild":
        ingest(store, Frames(_interactions(20, seed=3, offset=50_000)), source="before.csv")
    before = load_frames(store).interactions
    indexes = _indexes(store)

    batch = _interactions(60)
    batch.loc[59, "user_id"] = "boom"
    items = pd.DataFrame({"item_id": ["i1"], "title": ["Title"]})
    with pytest.raises(RecoError, match="boom refused") as caught:
        ingest(store, Frames(batch, items=items), source="failing.csv")
    assert "failing.csv" in str(caught.value) and "nothing was changed" in str(caught.value)

    assert counts(store) == {"users": 0, "items": 0, "interactions": len(before)}
    assert_same_interactions(load_frames(store).interactions, before)
    assert _indexes(store) == indexes  # dropped indexes came back with the rollback
    # And the same batch without the bad row goes through.
    report = ingest(store, Frames(batch.iloc[:59]), source="fixed.csv")
    assert report.interactions_added == 59


def test_a_failure_after_the_interactions_rolls_them_back(store, monkeypatch):
    bulk = postgres_bulk if is_postgres(store) else sqlite_bulk
    real_upsert = bulk.upsert_metadata

    def fail_on_users(connection, table, *args, **kwargs):
        if table == "users":
            raise RuntimeError("disk on fire")
        return real_upsert(connection, table, *args, **kwargs)

    monkeypatch.setattr(bulk, "upsert_metadata", fail_on_users)
    items = pd.DataFrame({"item_id": ["i1"]})
    users = pd.DataFrame({"user_id": ["u1"]})
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(store, Frames(_interactions(30), items=items, users=users), source="x")
    assert counts(store) == {"users": 0, "items": 0, "interactions": 0}


def test_report_counts_time_and_speed(store):
    report = ingest(store, Frames(_interactions(1000)), source="speed")
    assert report.seconds > 0
    assert report.rows_per_second > 0
    assert isinstance(report, repository.IngestReport)


def test_minimal_frames_get_defaults_and_ids_become_text(store):
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [10, 20]})
    report = ingest(store, Frames(frame), source="minimal.csv")
    assert report.interactions_added == 2
    loaded = load_frames(store).interactions
    assert loaded["user_id"].tolist() == ["1", "2"]
    assert loaded["event_type"].tolist() == [schema.DEFAULT_EVENT_TYPE] * 2
    assert loaded["timestamp"].isna().all() and loaded["value"].isna().all()


def test_timestamps_and_values_that_are_not_numbers_are_refused(store):
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "timestamp": [1.5, "soon"]}
    )
    with pytest.raises(ValidationError) as caught:
        ingest(store, Frames(frame), source="times.csv")
    assert len(caught.value.problems) == 2
    assert "row 2, column timestamp: 'soon'" in str(caught.value)


def test_sqlite_writers_queue_instead_of_failing(tmp_path):
    # Two processes' worth of engines on one file, writing at the same time.
    from concurrent.futures import ThreadPoolExecutor

    from reco.store import open_store

    url = f"sqlite:///{tmp_path / 'reco.db'}"
    engines = [open_store(url), open_store(url)]
    try:
        batches = [_interactions(5000, seed=s, offset=s * 100_000) for s in range(6)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            reports = list(
                pool.map(
                    lambda k: ingest(engines[k % 2], Frames(batches[k]), source=f"b{k}"),
                    range(6),
                )
            )
        assert sum(r.interactions_added for r in reports) == 30_000
        assert counts(engines[0])["interactions"] == 30_000
    finally:
        for engine in engines:
            engine.dispose()


def test_dedupe_keys_are_stable_across_versions():
    # Stored keys must never change meaning: re-ingesting an old file relies on them.
    import hashlib

    from reco.store.prepare import dedupe_keys

    frame = schema.normalize_interactions(
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u1"],
                "item_id": ["i1", "i1", "i1"],
                "timestamp": pd.array([10, None, 10], dtype="Int64"),
                "event_type": ["view", "view", "view"],
                "event_id": [None, None, "ev-1"],
            }
        )
    )
    keys, fingerprints = dedupe_keys(frame)

    def content(raw: bytes) -> str:
        return "h:" + hashlib.blake2b(raw, digest_size=16).hexdigest()

    assert keys.to_pylist() == [
        content(b"u1\x00i1\x0010\x00view"),
        content(b"u1\x00i1\x00\x00view"),
        "e:ev-1",
    ]
    assert len(set(fingerprints.tolist())) == 3
