"""Bulk writes and reads on PostgreSQL: COPY through psycopg 3 on the raw connection.

Writes COPY the batch into a temporary table (dropped at commit) and move it into the
real table with one INSERT ... SELECT that skips known dedupe keys (a hash anti-join,
ON CONFLICT DO NOTHING as the guard against concurrent writers). A large batch into an
empty table is COPYed straight in with the indexes rebuilt afterwards; a small batch
goes in as one INSERT of its columns as arrays (:func:`insert_few`). Every function
runs inside the caller's transaction.

Ids come from a sequence when a row is inserted, but become visible when its
transaction commits: without care, a transaction holding id 10 could commit after one
holding id 11, and a reader that saw 11 as its watermark (a model's
``store_watermark``, the event relay's position) would never see 10. So every
transaction that inserts interactions first takes one transaction-scoped advisory
lock (:func:`lock_interaction_writes`): writers of interactions queue, each one's ids
are all larger than the previous one's, and they commit in id order (PostgreSQL makes
a commit visible before it releases the commit's locks).
"""

from __future__ import annotations

import io
import zlib
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy import Connection

from reco.data import schema
from reco.store.prepare import AVAILABLE, EventRows, InteractionRows, MetadataRows

_BATCH_INTERACTIONS = "reco_batch_interactions"
_BATCH_METADATA = "reco_batch_metadata"
# Batches at least this large go into an empty table by COPY with indexes rebuilt after.
REBUILD_MIN_ROWS = 50_000
# Memory for the sorts of one ingest (ORDER BY seq, index builds); PostgreSQL takes
# only what it needs, and the setting ends with the transaction.
_SORT_MEMORY = "256MB"

_INTERACTION_COLUMNS = ("dedupe_key", "event_id", "user_id", "item_id", "ts", "value", "event_type")
# Key of the advisory lock every transaction takes before inserting interactions.
INTERACTION_WRITE_LOCK = zlib.crc32(b"reco.store.interactions.write")

# A small batch as one statement: one array per column, unnested in batch order.
_INSERT_FEW = (
    'INSERT INTO interactions (dedupe_key, event_id, user_id, item_id, "timestamp", value, '
    "event_type, source, ingested_at) SELECT k, e, u, i, t, v, et, %s, %s FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::int8[], %s::float8[], %s::text[]) "
    "WITH ORDINALITY AS b(k, e, u, i, t, v, et, n) ORDER BY n "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)


def _raw(connection: Connection) -> Any:
    return connection.connection.driver_connection


def lock_interaction_writes(cursor: Any) -> None:
    """Wait until no other transaction is inserting interactions, then hold that right
    until this transaction ends (see the module's docstring). Take it before the first
    id is handed out."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INTERACTION_WRITE_LOCK,))


def _is_empty(cursor: Any) -> bool:
    cursor.execute("SELECT NOT EXISTS (SELECT 1 FROM interactions)")
    return bool(cursor.fetchone()[0])


def _droppable_indexes(cursor: Any) -> list[tuple[str, str]]:
    """(name, CREATE statement) of each interactions index that no constraint owns."""
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
        "JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE x.indrelid = 'interactions'::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)"
    )
    return [(str(name), str(ddl)) for name, ddl in cursor.fetchall()]


def _load_into_empty(cursor: Any, rows: InteractionRows, source: str, now: datetime) -> int:
    """COPY straight into the empty table with its indexes dropped, then rebuild them.

    Building an index over sorted data once is about twice as fast as inserting a
    million random keys into it; the rows are already distinct, so the rebuilt unique
    index cannot fail.
    """
    indexes = _droppable_indexes(cursor)
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    with cursor.copy(
        'COPY interactions (dedupe_key, event_id, user_id, item_id, "timestamp", value, '
        "event_type, source, ingested_at) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(
            ["text", "text", "text", "text", "int8", "float8", "text", "text", "timestamptz"]
        )
        for row in rows.all_rows(source, now):
            copy.write_row(row)
    cursor.execute(f"SET LOCAL maintenance_work_mem = '{_SORT_MEMORY}'")
    for _, ddl in indexes:
        cursor.execute(ddl)
    cursor.execute("ANALYZE interactions")
    return len(rows)


def insert_interactions(
    connection: Connection, rows: InteractionRows, *, source: str, now: datetime
) -> int:
    """Append the events whose dedupe key is new; return how many were added.

    An empty table takes a large batch through :func:`_load_into_empty` (holding an
    exclusive lock on the table meanwhile); otherwise the batch is COPYed into a
    temporary table and inserted with ON CONFLICT DO NOTHING. ``seq`` keeps the
    frame's order, so ids follow the order of the file.

    The interaction write lock is taken only once the batch is in the temporary
    table, so live events wait for the final INSERT, not for the whole COPY.
    """
    with _raw(connection).cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{_SORT_MEMORY}'")
        if len(rows) >= REBUILD_MIN_ROWS and _is_empty(cursor):
            # Check again under the locks: another ingest may have written meanwhile.
            lock_interaction_writes(cursor)
            cursor.execute("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
            if _is_empty(cursor):
                return _load_into_empty(cursor, rows, source, now)
        cursor.execute(
            f"CREATE TEMP TABLE {_BATCH_INTERACTIONS} (seq bigint, dedupe_key text, "
            "event_id text, user_id text, item_id text, ts bigint, value double precision, "
            "event_type text) ON COMMIT DROP"
        )
        columns = ", ".join(("seq", *_INTERACTION_COLUMNS))
        with cursor.copy(
            f"COPY {_BATCH_INTERACTIONS} ({columns}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "text", "text", "text", "int8", "float8", "text"])
            for seq, row in enumerate(rows.all_rows()):
                copy.write_row((seq, *row))
        # Temporary tables get no automatic statistics; without them the planner
        # cannot see that a hash anti-join beats a million index probes.
        cursor.execute(f"ANALYZE {_BATCH_INTERACTIONS}")
        lock_interaction_writes(cursor)  # at once if the empty-table check took it
        cursor.execute(
            'INSERT INTO interactions (dedupe_key, event_id, user_id, item_id, "timestamp", '
            "value, event_type, source, ingested_at) "
            "SELECT dedupe_key, event_id, user_id, item_id, ts, value, event_type, %s, %s "
            f"FROM {_BATCH_INTERACTIONS} b WHERE NOT EXISTS "
            "(SELECT 1 FROM interactions i WHERE i.dedupe_key = b.dedupe_key) ORDER BY seq "
            "ON CONFLICT (dedupe_key) DO NOTHING",
            (source, now),
        )
        added = cursor.rowcount
        cursor.execute(f"DROP TABLE {_BATCH_INTERACTIONS}")
    return added


def insert_few(connection: Connection, rows: EventRows, *, source: str, now: datetime) -> int:
    """Append a small batch (see :class:`~reco.store.prepare.EventRows`) after taking
    the interaction write lock; return how many rows were new.

    One statement, INSERT ... SELECT FROM unnest(one array per column) ... ON CONFLICT
    DO NOTHING, in batch order: at this size a temporary table and COPY cost more than
    the insert itself, and 500 rows went in about a third faster than with an
    executemany of one row each (one statement to plan and run instead of 500).
    """
    with _raw(connection).cursor() as cursor:
        lock_interaction_writes(cursor)
        columns = [list(column) for column in zip(*rows.rows, strict=True)]
        cursor.execute(_INSERT_FEW, (source, now, *columns))
        return cursor.rowcount


def upsert_metadata(
    connection: Connection, table: str, id_column: str, rows: MetadataRows, *, now: datetime
) -> None:
    """Insert new ids, then update every id of the batch: given cells replace, empty
    cells keep, attributes merge key by key (jsonb ``||``).

    Inserting first means a concurrent ingest of the same new id makes this one wait
    on the unique index and then update, instead of losing its values.
    """
    names = list(rows.columns)
    types = {"title": "text", "text": "text", "categories": "text", AVAILABLE: "boolean"}
    with _raw(connection).cursor() as cursor:
        declared = ", ".join(f"{n} {types[n]}" for n in names)
        cursor.execute(
            f"CREATE TEMP TABLE {_BATCH_METADATA} (id text, "
            f"{declared + ', ' if declared else ''}attributes text) ON COMMIT DROP"
        )
        with cursor.copy(
            f"COPY {_BATCH_METADATA} (id, {''.join(n + ', ' for n in names)}attributes) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            # The attributes are JSON text already; they are cast to jsonb on the way in
            # (psycopg's jsonb type would store each one as a JSON string).
            copy.set_types(["text", *(types[n] for n in names), "text"])
            for row in zip(
                rows.ids, *(rows.columns[n] for n in names), rows.attributes, strict=True
            ):
                copy.write_row(row)
        inserted = [f"b.{n}" if n != AVAILABLE else f"COALESCE(b.{n}, true)" for n in names]
        cursor.execute(
            f"INSERT INTO {table} ({id_column}, {''.join(n + ', ' for n in names)}attributes, "
            f"created_at, updated_at) SELECT b.id, {''.join(c + ', ' for c in inserted)}"
            f"b.attributes::jsonb, %s, %s FROM {_BATCH_METADATA} b "
            f"ON CONFLICT ({id_column}) DO NOTHING",
            (now, now),
        )
        updates = [f"{n} = COALESCE(b.{n}, t.{n})" for n in names]
        cursor.execute(
            f"UPDATE {table} AS t SET {''.join(u + ', ' for u in updates)}"
            "attributes = t.attributes || b.attributes::jsonb, updated_at = %s "
            f"FROM {_BATCH_METADATA} b WHERE t.{id_column} = b.id",
            (now,),
        )
        cursor.execute(f"DROP TABLE {_BATCH_METADATA}")


def read_interactions(connection: Connection) -> dict[str, pd.Series]:
    """Every interaction in id order, one Series per canonical column (canonical dtypes).

    Reads ``COPY ... TO STDOUT`` as CSV into memory and parses it with pyarrow's CSV
    reader: far faster than fetching millions of Python tuples. In CSV
    a NULL is an empty unquoted field and an empty string is ``""``, so the two stay
    apart.
    """
    query = (
        'COPY (SELECT user_id, item_id, "timestamp", value, event_type, event_id '
        "FROM interactions ORDER BY id) TO STDOUT (FORMAT CSV)"
    )
    names = ["user_id", "item_id", "timestamp", "value", "event_type", "event_id"]
    column_types = {
        "user_id": pa.string(),
        "item_id": pa.string(),
        "timestamp": pa.int64(),
        "value": pa.float64(),
        "event_type": pa.string(),
        "event_id": pa.string(),
    }
    buffer = io.BytesIO()
    with _raw(connection).cursor() as cursor, cursor.copy(query) as copy:
        for block in copy:
            buffer.write(block)
    if buffer.tell() == 0:
        table = pa.table({n: pa.array([], type=t) for n, t in column_types.items()})
    else:
        table = pa_csv.read_csv(
            pa.BufferReader(buffer.getbuffer()),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=column_types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    del buffer
    stamps = table.column("timestamp")
    return {
        "user_id": pd.Series(schema.STR.__from_arrow__(table.column("user_id"))),
        "item_id": pd.Series(schema.STR.__from_arrow__(table.column("item_id"))),
        "timestamp": pd.Series(
            pd.arrays.IntegerArray(
                pc.fill_null(stamps, 0).to_numpy().astype(np.int64, copy=False),
                stamps.is_null().to_numpy(),
            )
        ),
        "value": pd.Series(table.column("value").to_numpy().astype(np.float64, copy=False)),
        "event_type": pd.Series(schema.STR.__from_arrow__(table.column("event_type"))),
        # object, so that a missing id is None as in every canonical frame
        "event_id": pd.Series(table.column("event_id").to_numpy(), dtype=object),
    }
