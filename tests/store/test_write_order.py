"""Interactions become visible in id order: on PostgreSQL every inserting transaction
takes one advisory lock, on SQLite the write lock already serialises writers. So a
reader's watermark (largest visible id) never passes an id that shows up later."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from sqlalchemy import text

from reco.data.schema import Frames
from reco.store import ingest, postgres_bulk, prepare
from reco.store.db import write_transaction
from reco.store.events import append_events, events_since, watermark
from reco.store.prepare import event_rows, prepare_interactions
from reco.store.repository import _now, insert_event_rows


def _hold_first_insert(engine, path: str, inserted: threading.Event, release: threading.Event):
    """Insert one event of u1 by ``path`` and keep the transaction open until released."""
    with write_transaction(engine) as connection:
        if path == "few":
            rows = event_rows(["u1"], ["early"], [1], [None], ["view"], [None])
            insert_event_rows(connection, rows, source="first")
        else:
            frame = pd.DataFrame({"user_id": ["u1"], "item_id": ["early"], "timestamp": [1]})
            rows = prepare_interactions(frame, source="first")
            postgres_bulk.insert_interactions(connection, rows, source="first", now=_now())
        inserted.set()
        release.wait(10)


def _second_writer(engine, path: str) -> int:
    """Events of u1 through the public API: one live event, or a file-sized batch."""
    if path == "few":
        append_events(engine, [{"user_id": "u1", "item_id": "late"}], source="second")
        return 1
    n = prepare.FEW_ROWS + 500
    frame = pd.DataFrame({"user_id": ["u1"] * n, "item_id": [f"late-{k}" for k in range(n)]})
    ingest(engine, Frames(frame), source="second")
    return n


@pytest.mark.postgres
@pytest.mark.parametrize("first", ["few", "bulk"])
@pytest.mark.parametrize("second", ["few", "bulk"])
def test_postgres_inserts_commit_in_id_order(postgres_store, first, second):
    """A writer that started later waits for the earlier one to commit, whichever way
    each one writes, so a reader's watermark never passes an id still invisible to it."""
    engine = postgres_store
    first_inserted, release_first, second_done = (threading.Event() for _ in range(3))
    written: list[int] = []
    writer = threading.Thread(
        target=_hold_first_insert, args=(engine, first, first_inserted, release_first)
    )
    writer.start()
    assert first_inserted.wait(10)
    other = threading.Thread(
        target=lambda: (written.append(_second_writer(engine, second)), second_done.set())
    )
    other.start()
    try:
        # The second insert queues behind the uncommitted first one ...
        assert not second_done.wait(0.5)
        # ... so a reader meanwhile sees neither, and its watermark stays below both.
        mark = watermark(engine)
        assert mark == 0
    finally:
        release_first.set()
        writer.join(10)
        other.join(30)
    assert second_done.is_set()
    later = events_since(engine, ["u1"], mark)["item_id"].tolist()
    assert later[0] == "early" and len(later) == 1 + written[0]
    with engine.connect() as connection:
        sources = connection.execute(text("SELECT source FROM interactions ORDER BY id")).all()
    assert [s for (s,) in sources] == ["first"] + ["second"] * written[0]


@pytest.mark.postgres
def test_without_the_lock_a_later_id_can_commit_first(postgres_store):
    """What the lock prevents: two plain inserts, the smaller id committed last, so a
    watermark read in between passes it and "id > watermark" misses it for good."""
    engine = postgres_store
    insert = text(
        "INSERT INTO interactions (dedupe_key, user_id, item_id, event_type, source) "
        "VALUES (:key, 'u1', :key, 'view', 'raw') RETURNING id"
    )
    with engine.connect() as early, engine.connect() as late:
        early_tx, late_tx = early.begin(), late.begin()
        early_id = early.execute(insert, {"key": "a"}).scalar_one()
        late_id = late.execute(insert, {"key": "b"}).scalar_one()  # no waiting
        late_tx.commit()
        mark = watermark(engine)
        early_tx.commit()
    assert early_id < late_id == mark
    assert events_since(engine, ["u1"], mark).empty  # "a" is lost to this reader


def test_sqlite_writers_are_serialised_by_the_write_lock(tmp_path):
    """SQLite needs no extra lock: BEGIN IMMEDIATE makes a second writer wait."""
    from reco.store.db import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    try:
        done = threading.Event()

        def second() -> None:
            append_events(engine, [{"user_id": "u1", "item_id": "late"}])
            done.set()

        rows = event_rows(["u1"], ["early"], [1], [None], ["view"], [None])
        with write_transaction(engine) as connection:
            insert_event_rows(connection, rows, source="first")
            other = threading.Thread(target=second)
            other.start()
            time.sleep(0.3)
            assert not done.is_set()
        other.join(10)
        assert events_since(engine, ["u1"], 0)["item_id"].tolist() == ["early", "late"]
    finally:
        engine.dispose()
