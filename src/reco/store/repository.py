"""What the rest of reco asks of the store: ingest frames, load them back, count rows,
and keep track of model versions.

``ingest`` writes a whole batch in ONE transaction (all of it or nothing) through the
fastest path each backend has: COPY on PostgreSQL, chunked executemany on SQLite, and
for small batches (up to :data:`~reco.store.prepare.FEW_ROWS` events, such as live
events) plain Python checks and one executemany on either.

Interactions become visible in id order on both backends (an advisory lock on
PostgreSQL, SQLite's single writer), and ids are never reused, so a reader's
watermark (the largest id it sees) splits the log for good: every event stored later
has a larger id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError

from reco.data import schema
from reco.data.schema import Frames
from reco.errors import RecoError
from reco.store import postgres_bulk, sqlite_bulk
from reco.store.db import is_postgres, redacted, write_transaction
from reco.store.prepare import (
    ITEM_COLUMNS,
    EventRows,
    InteractionRows,
    MetadataRows,
    few_interaction_rows,
    prepare_interactions,
    prepare_metadata,
)
from reco.store.tables import interactions, items, users
from reco.store.versions import (
    current_model_version,
    list_model_versions,
    record_model_version,
    set_current_version,
)

__all__ = [
    "IngestReport",
    "StoreFrames",
    "counts",
    "current_model_version",
    "ingest",
    "ingest_rows",
    "insert_event_rows",
    "list_model_versions",
    "load_frames",
    "read_watermark",
    "record_model_version",
    "set_current_version",
]


@dataclass
class IngestReport:
    """What one :func:`ingest` call did.

    ``duplicates_skipped`` counts interactions already in the store or repeated
    within the batch; ``items_upserted`` / ``users_upserted`` count distinct ids
    inserted or updated.
    """

    interactions_added: int
    duplicates_skipped: int
    items_upserted: int
    users_upserted: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Interactions received (added or skipped) per second of the whole call."""
        received = self.interactions_added + self.duplicates_skipped
        return received / self.seconds if self.seconds > 0 else float("inf")


def ingest(engine: Engine, frames: Frames, *, source: str) -> IngestReport:
    """Write the frames to the store in one transaction; re-ingesting adds nothing.

    Interactions are appended unless their dedupe key (``e:<event_id>``, else a hash
    of user, item, timestamp and event type) is already stored or came earlier in
    the batch. Items and users are upserted: given cells replace stored ones, empty
    cells keep them, attributes merge key by key. ``source`` (a file name, "api", ...)
    is recorded on every new interaction.

    Raises ValidationError before writing anything when the frames break a rule (ids
    missing, empty, longer than 512 characters...), and RecoError when the database
    refuses the batch; in both cases the store is unchanged.
    """
    started = time.perf_counter()
    received = frames.interactions
    if received is None:  # a metadata-only batch
        received = schema.empty_interactions()
    rows: InteractionRows | EventRows | None = few_interaction_rows(received)
    if rows is None:
        rows = prepare_interactions(received, source=source)
    item_rows = (
        prepare_metadata(frames.items, kind="items", source=source)
        if frames.items is not None
        else None
    )
    user_rows = (
        prepare_metadata(frames.users, kind="users", source=source)
        if frames.users is not None
        else None
    )
    return _write(engine, rows, item_rows, user_rows, source=source, started=started)


def ingest_rows(engine: Engine, rows: EventRows, *, source: str) -> IngestReport:
    """Append a small, already validated batch (:func:`reco.store.prepare.event_rows`)
    in one transaction, as :func:`ingest` appends interactions."""
    return _write(engine, rows, None, None, source=source, started=time.perf_counter())


def insert_event_rows(
    connection: Connection, rows: EventRows, *, source: str, now: datetime | None = None
) -> int:
    """Append a small batch inside the caller's write transaction (see
    :func:`reco.store.db.write_transaction`); return how many events were new."""
    bulk = postgres_bulk if is_postgres(connection) else sqlite_bulk
    return bulk.insert_few(connection, rows, source=source, now=now or _now())


def _now() -> datetime:
    """The ``ingested_at`` of a batch (one function, so tests can pin the clock)."""
    return datetime.now(UTC)


def _write(
    engine: Engine,
    rows: InteractionRows | EventRows,
    item_rows: MetadataRows | None,
    user_rows: MetadataRows | None,
    *,
    source: str,
    started: float,
) -> IngestReport:
    """Everything of one batch in one transaction; database refusals become RecoError."""
    bulk = postgres_bulk if is_postgres(engine) else sqlite_bulk
    now = _now()
    try:
        with write_transaction(engine) as connection:
            added = 0
            if isinstance(rows, EventRows):
                if len(rows):
                    added = bulk.insert_few(connection, rows, source=source, now=now)
            elif len(rows):
                added = bulk.insert_interactions(connection, rows, source=source, now=now)
            if item_rows is not None and len(item_rows):
                bulk.upsert_metadata(connection, "items", schema.ITEM, item_rows, now=now)
            if user_rows is not None and len(user_rows):
                bulk.upsert_metadata(connection, "users", schema.USER, user_rows, now=now)
    except (DBAPIError, engine.dialect.loaded_dbapi.Error) as exc:
        # Bulk paths use the driver directly, so its own errors arrive unwrapped too.
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        reason = str(cause).strip()
        raise RecoError(
            f"{source}: the store at {redacted(engine.url)} refused the batch, so nothing "
            f"was changed: {reason}"
        ) from exc
    return IngestReport(
        interactions_added=added,
        duplicates_skipped=rows.received - added,
        items_upserted=len(item_rows) if item_rows is not None else 0,
        users_upserted=len(user_rows) if user_rows is not None else 0,
        seconds=time.perf_counter() - started,
    )


def _read_metadata(connection: Connection, kind: str) -> pd.DataFrame | None:
    """Users or items with their attributes expanded into columns; None when empty."""
    if kind == "items":
        table, id_column = items, schema.ITEM
        own = [items.c[c] for c in (*ITEM_COLUMNS, "available")]
    else:
        table, id_column = users, schema.USER
        own = []
    # Tombstoned (deleted) users and items are gone for training too.
    result = connection.execute(
        select(table.c[id_column], *own, table.c.attributes)
        .where(table.c.deleted_at.is_(None))
        .order_by(table.c[id_column])
    ).all()
    if not result:
        return None
    names = [id_column, *(c.name for c in own)]
    base = pd.DataFrame([row[:-1] for row in result], columns=names)
    base[id_column] = base[id_column].astype(schema.STR)
    if "available" in base:
        base["available"] = base["available"].astype(bool)
    attributes = pd.DataFrame.from_records([row[-1] or {} for row in result], index=base.index)
    extra = attributes.drop(columns=[c for c in attributes.columns if c in base.columns])
    return pd.concat([base, extra], axis=1) if len(extra.columns) else base


@dataclass
class StoreFrames(Frames):
    """Frames read from the store, with the snapshot's ``watermark``: the largest
    interactions id it holds (0 when empty). Events with larger ids came after it."""

    watermark: int = 0


def read_watermark(connection: Connection) -> int:
    """The largest interactions id visible to ``connection`` (0 when there is none)."""
    query = select(func.coalesce(func.max(interactions.c.id), 0))
    return int(connection.execute(query).scalar_one())


def load_frames(engine: Engine) -> StoreFrames:
    """Everything in the store as canonical frames, read from one consistent snapshot.

    Interactions come in id order (the order they were ingested); items and users have
    one column per attribute (None when their table is empty), deleted ones left out.
    ``watermark`` is the largest interactions id of the same snapshot.
    """
    with engine.connect() as connection:
        if is_postgres(connection):
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            bulk = postgres_bulk if is_postgres(connection) else sqlite_bulk
            # Same transaction as the reads below, so the watermark is the snapshot's.
            watermark = read_watermark(connection)
            columns = bulk.read_interactions(connection)
            item_frame = _read_metadata(connection, "items")
            user_frame = _read_metadata(connection, "users")
    return StoreFrames(
        interactions=_canonical(columns),
        items=item_frame,
        users=user_frame,
        watermark=watermark,
    )


def _canonical(columns: dict[str, Any]) -> pd.DataFrame:
    """The interaction frame with the canonical dtypes of :mod:`reco.data.schema`."""
    if len(columns[schema.USER]) == 0:
        return schema.empty_interactions()
    return pd.DataFrame({name: columns[name] for name in schema.INTERACTION_COLUMNS})


def counts(engine: Engine) -> dict[str, int]:
    """Rows per table: ``{"users": ..., "items": ..., "interactions": ...}``."""
    with engine.connect() as connection:
        return {
            name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (("users", users), ("items", items), ("interactions", interactions))
        }
