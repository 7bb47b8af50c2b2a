"""Bulk writes and reads on SQLite: executemany in chunks on the raw sqlite3 connection.

Every function runs inside the caller's transaction (a SQLAlchemy ``Connection`` with
a transaction begun), so a failure anywhere rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection

from reco.data import schema
from reco.store.prepare import AVAILABLE, EventRows, InteractionRows, MetadataRows

CHUNK_ROWS = 100_000
# Batches at least this large go into an empty table with indexes rebuilt after.
REBUILD_MIN_ROWS = 50_000
# For a bulk write: a 512 MiB page cache (negative = KiB) keeps the randomly-keyed
# dedupe index in memory (and lets index builds sort in memory); helper threads
# share the sorting of an index rebuild.
_BULK_PRAGMAS = {"cache_size": -512 * 1024, "threads": 2}
# Only batches this large get those settings, for the length of the write: shrinking
# the cache back afterwards frees the pages the write cached, so doing it on every
# small write would leave each pooled connection with a cold cache.
BULK_PRAGMAS_MIN_ROWS = 20_000

_INSERT_NEW = (
    "INSERT INTO interactions "
    '(dedupe_key, event_id, user_id, item_id, "timestamp", value, event_type, source, '
    "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Only a known dedupe key skips a row; any other refusal fails the whole batch.
_INSERT_INTERACTIONS = _INSERT_NEW + " ON CONFLICT (dedupe_key) DO NOTHING"

_READ_INTERACTIONS = (
    'SELECT user_id, item_id, "timestamp", value, event_type, event_id FROM interactions '
    "ORDER BY id"
)


def _raw(connection: Connection) -> Any:
    return connection.connection.driver_connection


def sqlite_datetime(moment: datetime) -> str:
    """A datetime in the text form SQLAlchemy's DateTime type stores on SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def _bulk_settings(raw: Any, rows: int) -> Iterator[None]:
    """A big page cache and sorter threads for one large bulk write, restored
    afterwards; smaller writes leave the connection's settings (and cache) alone."""
    if rows < BULK_PRAGMAS_MIN_ROWS:
        yield
        return
    previous = {name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in _BULK_PRAGMAS}
    for name, value in _BULK_PRAGMAS.items():
        raw.execute(f"PRAGMA {name}={value}")
    try:
        yield
    finally:
        for name, value in previous.items():
            raw.execute(f"PRAGMA {name}={int(value)}")


def _is_empty(raw: Any) -> bool:
    return bool(raw.execute("SELECT NOT EXISTS (SELECT 1 FROM interactions)").fetchone()[0])


def insert_interactions(
    connection: Connection, rows: InteractionRows, *, source: str, now: datetime
) -> int:
    """Append the events whose dedupe key is new; return how many were added.

    Into an empty table a large batch goes with the indexes dropped and rebuilt after
    (the rows are already distinct): building an index once beats a million random
    B-tree inserts. The caller's transaction holds the write lock, so no other writer
    can slip in between the emptiness check and the rebuild.
    """
    raw = _raw(connection)
    stamp = sqlite_datetime(now)
    added = 0
    with _bulk_settings(raw, len(rows)):
        indexes: list[tuple[str, str]] = []
        if len(rows) >= REBUILD_MIN_ROWS and _is_empty(raw):
            indexes = raw.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'interactions' AND sql IS NOT NULL"
            ).fetchall()
            for name, _ in indexes:
                raw.execute(f'DROP INDEX "{name}"')
        # Without its unique index the table cannot name a conflict; the rows are
        # distinct and the table empty, so there is none.
        insert = _INSERT_NEW if indexes else _INSERT_INTERACTIONS
        cursor = raw.cursor()
        try:
            for start in range(0, len(rows), CHUNK_ROWS):
                cursor.executemany(insert, rows.rows(start, start + CHUNK_ROWS, source, stamp))
                added += cursor.rowcount
        finally:
            cursor.close()
        for _, ddl in indexes:
            raw.execute(ddl)
    return added


def insert_few(connection: Connection, rows: EventRows, *, source: str, now: datetime) -> int:
    """Append a small batch (see :class:`~reco.store.prepare.EventRows`) with one
    executemany; return how many rows were new.

    No extra lock is needed for ids to become visible in id order: the caller's
    transaction holds SQLite's single write lock (BEGIN IMMEDIATE) from before the
    first id is handed out until it commits, so a later writer's ids are all larger
    and its rows become visible after these.
    """
    stamp = sqlite_datetime(now)
    cursor = _raw(connection).cursor()
    try:
        cursor.executemany(_INSERT_INTERACTIONS, [(*row, source, stamp) for row in rows.rows])
        return cursor.rowcount
    finally:
        cursor.close()


def upsert_metadata(
    connection: Connection, table: str, id_column: str, rows: MetadataRows, *, now: datetime
) -> None:
    """Insert new ids, update known ones: given cells replace, empty cells keep, and
    attributes merge key by key (``json_patch``)."""
    names = list(rows.columns)
    stamp = sqlite_datetime(now)
    insert_columns = [id_column, *names, "attributes", "created_at", "updated_at"]
    placeholders = ["?"] * len(insert_columns)
    updates = [f"{n} = COALESCE(excluded.{n}, {table}.{n})" for n in names if n != AVAILABLE]
    if AVAILABLE in rows.columns:
        # An empty cell inserts as available but leaves a known item's flag alone; the
        # raw value is bound a second time for the update, since excluded holds 1.
        placeholders[insert_columns.index(AVAILABLE)] = "COALESCE(?, 1)"
        updates.append(f"{AVAILABLE} = COALESCE(?, {table}.{AVAILABLE})")
    updates += [
        f"attributes = json_patch({table}.attributes, excluded.attributes)",
        "updated_at = excluded.updated_at",
    ]
    sql = (
        f"INSERT INTO {table} ({', '.join(insert_columns)}) VALUES ({', '.join(placeholders)}) "
        f"ON CONFLICT ({id_column}) DO UPDATE SET {', '.join(updates)}"
    )
    values = [rows.ids, *(rows.columns[n] for n in names), rows.attributes]
    if AVAILABLE in rows.columns:
        tail = [[stamp] * len(rows), [stamp] * len(rows), rows.columns[AVAILABLE]]
    else:
        tail = [[stamp] * len(rows), [stamp] * len(rows)]
    cursor = _raw(connection).cursor()
    try:
        for start in range(0, len(rows), CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            cursor.executemany(sql, zip(*(v[part] for v in (*values, *tail)), strict=True))
    finally:
        cursor.close()


def read_interactions(connection: Connection) -> dict[str, pd.Series]:
    """Every interaction in id order, one Series per canonical column, with the
    canonical dtypes (``event_id`` holds None where absent).

    Each fetched chunk becomes compact arrays at once (Arrow strings, numpy numbers),
    so the Python tuples of only one chunk are alive at a time.
    """
    text = pa.large_string()
    columns: dict[str, list[Any]] = {name: [] for name in schema.INTERACTION_COLUMNS}
    cursor = _raw(connection).cursor()
    try:
        cursor.execute(_READ_INTERACTIONS)
        while chunk := cursor.fetchmany(CHUNK_ROWS):
            # One 2-D object array per chunk: far cheaper than transposing with zip.
            block = np.array(chunk, dtype=object)
            columns["user_id"].append(pa.array(block[:, 0], type=text))
            columns["item_id"].append(pa.array(block[:, 1], type=text))
            columns["timestamp"].append(pa.array(block[:, 2], type=pa.int64(), from_pandas=True))
            columns["value"].append(block[:, 3].astype(np.float64))  # None -> NaN
            columns["event_type"].append(pa.array(block[:, 4], type=text))
            columns["event_id"].append(block[:, 5].copy())
    finally:
        cursor.close()

    def strings(name: str) -> pd.Series:
        return pd.Series(schema.STR.__from_arrow__(pa.chunked_array(columns[name], type=text)))

    stamps = pa.chunked_array(columns["timestamp"], type=pa.int64())
    return {
        "user_id": strings("user_id"),
        "item_id": strings("item_id"),
        "timestamp": pd.Series(
            pd.arrays.IntegerArray(
                pc.fill_null(stamps, 0).to_numpy().astype(np.int64, copy=False),
                stamps.is_null().to_numpy(),
            )
        ),
        "value": pd.Series(np.concatenate(columns["value"]) if columns["value"] else []),
        "event_type": strings("event_type"),
        "event_id": pd.Series(
            np.concatenate(columns["event_id"]) if columns["event_id"] else [], dtype=object
        ),
    }
