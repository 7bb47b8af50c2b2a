"""Live events: validation of whole batches, durable deduplicated appends (concurrent
ones sharing transactions), reading a user's events after a watermark, on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pandas as pd
import pytest
from sqlalchemy import event, text

from reco.data import schema
from reco.errors import RecoError, ValidationError
from reco.store import counts, load_frames, open_store
from reco.store.db import is_postgres, write_transaction
from reco.store.entities import delete_user
from reco.store.events import (
    AppendResult,
    append_events,
    events_frame,
    events_since,
    group_commit,
    watermark,
)
from reco.store.postgres_bulk import INTERACTION_WRITE_LOCK


def test_events_become_a_canonical_frame_with_epoch_second_timestamps():
    before = int(time.time())
    frame = events_frame(
        [
            {"user_id": "u1", "item_id": "i1", "timestamp": 1_700_000_000.9, "value": 4},
            {"user_id": "u1", "item_id": 42, "timestamp": "2023-11-14T22:13:20Z"},
            {"user_id": "u2", "item_id": "i2", "timestamp": "2023-11-14T23:13:20+01:00"},
            {"user_id": "u2", "item_id": "i3", "timestamp": "2023-11-14T22:13:20"},  # UTC
            {"user_id": "u2", "item_id": "i4", "timestamp": "1700000000", "event_type": "like"},
            {"user_id": "u3", "item_id": "i5", "event_id": "e-1", "timestamp": None},
        ]
    )
    after = int(time.time())
    pd.testing.assert_series_equal(frame.dtypes, schema.empty_interactions().dtypes)
    assert frame["timestamp"].iloc[:5].tolist() == [1_700_000_000] * 5
    assert before <= frame["timestamp"].iloc[5] <= after  # no timestamp: it happened now
    assert frame["item_id"].tolist() == ["i1", "42", "i2", "i3", "i4", "i5"]
    assert frame["event_type"].tolist() == ["interaction"] * 4 + ["like", "interaction"]
    assert frame["event_id"].tolist() == [None] * 5 + ["e-1"]
    assert frame["value"].iloc[0] == 4.0 and frame["value"].iloc[1:].isna().all()


def test_every_bad_event_is_listed_by_index_and_field():
    records = [
        {"user_id": "u1", "item_id": "i1"},  # fine
        {"item_id": "i1", "timestamp": 1_700_000_000_000},
        "not an object",
        {"user_id": "x" * 600, "item_id": "i\x00", "value": "5"},
        {"user_id": "u1", "item_id": "i1", "timestamp": "last tuesday", "colour": "red"},
        {"user_id": "u1", "item_id": "i1", "event_type": "", "event_id": " ", "timestamp": -5},
    ]
    with pytest.raises(ValidationError) as caught:
        events_frame(records)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "event 1",
        "event 1",
        "event 2",
        "event 3",
        "event 3",
        "event 3",
        "event 4",
        "event 4",
        "event 5",
        "event 5",
        "event 5",
    ]
    assert problems[0] == "event 1: user_id: is missing; every event needs one."
    assert "divide those by 1000" in problems[1]
    assert problems[3].startswith("event 3: user_id: is 600 characters long")
    assert problems[6].startswith("event 4: 'colour': unknown field")
    assert "ISO 8601" in problems[7]
    assert "event 0" not in str(caught.value)


def test_a_bad_batch_stores_nothing(store):
    append_events(store, [{"user_id": "u0", "item_id": "i0"}])
    batch = [{"user_id": f"u{n}", "item_id": "i1"} for n in range(50)]
    batch[17] = {"user_id": "u17", "item_id": ""}
    batch[33] = {"user_id": "u33", "item_id": "i1", "value": float("nan")}
    with pytest.raises(ValidationError, match="2 problem") as caught:
        append_events(store, batch)
    assert [p.split(":")[0] for p in caught.value.problems] == ["event 17", "event 33"]
    assert counts(store)["interactions"] == 1


def test_events_are_deduplicated_by_event_id_across_calls(store):
    first = append_events(
        store,
        [
            {"user_id": "u1", "item_id": "i1", "event_id": "e1"},
            {"user_id": "u1", "item_id": "i2", "event_id": "e2"},
            {"user_id": "u1", "item_id": "i2", "event_id": "e2"},  # repeated in the batch
        ],
    )
    assert first == AppendResult(accepted=2, duplicates=1)
    retried = append_events(
        store,
        [
            {"user_id": "u1", "item_id": "i2", "event_id": "e2", "timestamp": 5},  # same id
            {"user_id": "u1", "item_id": "i3", "event_id": "e3"},
        ],
    )
    assert retried == AppendResult(accepted=1, duplicates=1)
    stored = load_frames(store).interactions
    assert stored["event_id"].tolist() == ["e1", "e2", "e3"]
    assert append_events(store, []) == AppendResult(accepted=0, duplicates=0)


def test_events_record_their_source(store):
    append_events(store, [{"user_id": "u1", "item_id": "i1"}], source="mobile-app")
    with store.connect() as connection:
        sources = connection.execute(text("SELECT source FROM interactions")).scalars().all()
    assert sources == ["mobile-app"]


def test_events_since_returns_those_users_later_events_in_id_order(store):
    append_events(store, [{"user_id": "u1", "item_id": "old", "timestamp": 1}])
    mark = watermark(store)
    for n in range(6):
        # Timestamps out of order on purpose: the answer follows storage (id) order.
        append_events(
            store,
            [{"user_id": f"u{n % 3}", "item_id": f"i{n}", "timestamp": 100 - n, "value": n}],
        )
    got = events_since(store, ["u1", "u2", "u1"], mark)
    pd.testing.assert_series_equal(got.dtypes, schema.empty_interactions().dtypes)
    assert got["user_id"].tolist() == ["u1", "u2", "u1", "u2"]
    assert got["item_id"].tolist() == ["i1", "i2", "i4", "i5"]
    assert got["timestamp"].tolist() == [99, 98, 96, 95]
    assert got["value"].tolist() == [1.0, 2.0, 4.0, 5.0]
    assert events_since(store, ["u1"], 0)["item_id"].tolist() == ["old", "i1", "i4"]
    assert events_since(store, ["u1"], watermark(store)).empty
    assert events_since(store, ["nobody", "", "x" * 600], 0).empty
    assert events_since(store, [], 0).empty


def test_events_since_handles_many_users_in_id_order(store):
    records = [{"user_id": f"u{n:04d}", "item_id": "i", "timestamp": n} for n in range(1_100)]
    append_events(store, records[::-1])  # stored newest user first
    got = events_since(store, [r["user_id"] for r in records], 0)
    assert got["user_id"].tolist() == [r["user_id"] for r in records[::-1]]


def test_the_watermark_is_the_largest_interaction_id(store):
    assert watermark(store) == 0
    assert load_frames(store).watermark == 0
    append_events(store, [{"user_id": "u1", "item_id": f"i{n}"} for n in range(5)])
    with store.connect() as connection:
        largest = connection.execute(text("SELECT max(id) FROM interactions")).scalar_one()
    assert watermark(store) == largest
    assert load_frames(store).watermark == largest
    append_events(store, [{"user_id": "u2", "item_id": "i9"}])
    assert watermark(store) > largest
    assert events_since(store, ["u1", "u2"], largest)["user_id"].tolist() == ["u2"]


def _fill_many_users(engine) -> None:
    """20,000 events of 1,000 users, with planner statistics, written by SQL itself."""
    series = (
        "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 20000) "
        "SELECT k FROM n"
        if engine.dialect.name == "sqlite"
        else "SELECT generate_series(1, 20000) AS k"
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO interactions (dedupe_key, user_id, item_id, event_type, source) "
                "SELECT 'e:' || k, 'u' || (k % 1000), 'i' || (k % 97), 'view', 'test' "
                f"FROM ({series}) AS s"
            )
        )
        connection.execute(text("ANALYZE"))


def test_events_since_reads_one_index_range_per_user(store):
    from reco.store.events import _SINCE

    _fill_many_users(store)
    query = _SINCE.params(user_ids=["u1", "u2"], after_id=19_000).compile(
        dialect=store.dialect, compile_kwargs={"literal_binds": True}
    )
    with store.connect() as connection:
        if store.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
            details = " ".join(row[-1] for row in plan)
            assert "USING INDEX ix_interactions_user_id_id (user_id=? AND id>?)" in details, details
        else:
            plan = connection.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
            details = "\n".join(plan)
            assert "ix_interactions_user_id_id" in details, details
            index_condition = next(line for line in plan if "Index Cond" in line)
            assert "user_id" in index_condition and "id >" in index_condition, details
    assert events_since(store, ["u1", "u2"], 19_000)["user_id"].tolist() == ["u1", "u2"]


def test_ids_are_not_reused_after_the_newest_events_are_forgotten(store):
    # Without AUTOINCREMENT SQLite would hand out max(id) + 1, so deleting the newest
    # rows would let the next event take an id at or below a model's watermark.
    append_events(store, [{"user_id": "a", "item_id": "1"}, {"user_id": "b", "item_id": "2"}])
    mark = watermark(store)
    delete_user(store, "b")
    append_events(store, [{"user_id": "a", "item_id": "3"}])
    assert events_since(store, ["a"], mark)["item_id"].tolist() == ["3"]


@contextmanager
def _write_lock_held(engine):
    """Hold the interactions write lock (SQLite's, or reco's advisory lock on PostgreSQL)
    in another transaction, so that appends queue until the block ends."""
    with write_transaction(engine) as connection:
        if is_postgres(engine):
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": INTERACTION_WRITE_LOCK}
            )
        yield


def _append_concurrently(engine, batches: dict[str, list[dict]]) -> dict[str, object]:
    """Append each batch from its own thread while the write lock is held, release it
    once one append leads and the others wait, and return each outcome (a result or
    the error raised)."""
    outcomes: dict[str, object] = {}

    def append(name: str, batch: list[dict]) -> None:
        try:
            outcomes[name] = append_events(engine, batch)
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=append, args=item) for item in batches.items()]
    with _write_lock_held(engine):
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while group_commit(engine).queued < len(batches) - 1:
            assert time.monotonic() < deadline, "the appends did not queue up"
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_a_writer_lock_that_cannot_be_taken_fails_the_appends_and_blocks_none(
    tmp_path, monkeypatch
):
    from reco.store import db

    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    try:
        broken = db._WriterLock(tmp_path / "missing-folder" / "reco.db.writer-lock")
        monkeypatch.setattr(db, "_writer_lock", lambda _engine: broken)
        with pytest.raises(RecoError, match="writer lock"):
            append_events(engine, [{"user_id": "u", "item_id": "i", "event_id": "e1"}])
        monkeypatch.undo()
        # Nothing was left queued behind a leader that gave up: the next append writes.
        result = append_events(engine, [{"user_id": "u", "item_id": "i", "event_id": "e1"}])
        assert result.accepted == 1 and counts(engine)["interactions"] == 1
    finally:
        engine.dispose()


def test_concurrent_appends_share_a_transaction_and_each_gets_its_own_counts(store):
    append_events(store, [{"user_id": "u0", "item_id": "i0", "event_id": "old"}])
    commits: list[int] = []
    event.listen(store, "commit", lambda _connection: commits.append(1))
    outcomes = _append_concurrently(
        store,
        {
            "a": [{"user_id": "u1", "item_id": "i1", "event_id": "a1"}],
            "b": [
                {"user_id": "u2", "item_id": "i2", "event_id": "b1"},
                {"user_id": "u2", "item_id": "i3", "event_id": "old"},  # stored before
            ],
            "c": [{"user_id": "u3", "item_id": "i3", "event_id": f"c{k}"} for k in range(5)],
            "d": [{"user_id": "u4", "item_id": "i4"}],
        },
    )
    # The lock holder's, then on SQLite one for all four: the leader waits for the file's
    # writer lock with its batch still queued, so the others join it. On PostgreSQL the
    # leader's own, then one shared by the three that queued behind it.
    assert len(commits) == 1 + (2 if is_postgres(store) else 1)
    assert outcomes == {
        "a": AppendResult(accepted=1, duplicates=0),
        "b": AppendResult(accepted=1, duplicates=1),
        "c": AppendResult(accepted=5, duplicates=0),
        "d": AppendResult(accepted=1, duplicates=0),
    }
    assert counts(store)["interactions"] == 1 + 8


def test_a_batch_the_database_refuses_fails_alone(store):
    if is_postgres(store):
        refuse = [
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
            "IF NEW.item_id = 'poison' THEN RAISE EXCEPTION 'poison is refused' "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON interactions "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ]
    else:
        refuse = [
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON interactions "
            "WHEN NEW.item_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison is refused'); END"
        ]
    with store.begin() as connection:
        for statement in refuse:
            connection.execute(text(statement))
    outcomes = _append_concurrently(
        store,
        {
            "first": [{"user_id": "u1", "item_id": "i1"}],
            "good": [{"user_id": "u2", "item_id": "i2"}, {"user_id": "u2", "item_id": "i3"}],
            "bad": [{"user_id": "u3", "item_id": "i3"}, {"user_id": "u3", "item_id": "poison"}],
            "also good": [{"user_id": "u4", "item_id": "i4"}],
        },
    )
    assert isinstance(outcomes["bad"], RecoError)
    assert "poison is refused" in str(outcomes["bad"])
    assert "nothing was changed" in str(outcomes["bad"])
    assert outcomes["good"] == AppendResult(accepted=2, duplicates=0)
    assert outcomes["also good"] == AppendResult(accepted=1, duplicates=0)
    users = load_frames(store).interactions["user_id"].tolist()
    assert sorted(users) == ["u1", "u2", "u2", "u4"]
