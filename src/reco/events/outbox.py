"""The store as an outbox: which stored events are settled, and reading them in id order.

The relay publishes interactions with ids above the bus's position. That is only safe
for ids no writer can still commit below: on PostgreSQL, ids come from a sequence
when a row is inserted, not when its transaction commits, so a transaction holding id
10 may commit after one holding id 11 has become visible. A relay that moved past 11
would never publish 10. :func:`settled_watermark` therefore briefly takes a SHARE lock
on ``interactions``: it waits for every in-flight write to end and lets none start,
so the largest visible id at that moment has nothing uncommitted below it. The lock
is held for one index lookup; a short ``lock_timeout`` makes the relay give up and try
again later rather than queue writers behind a long bulk ingest. On SQLite writers
are serialised and ids are handed out in commit order, so every visible id is settled
(:func:`every_visible_id_is_settled`) and the relay reads without asking.

The relay asks on every round, many times a second, so :func:`latest_id` and
:func:`read_events` talk to the driver directly: SQLAlchemy's statement and row
machinery cost several times the query itself (about 6 µs per event read, against 1).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from reco.events.event import Event
from reco.store.db import is_postgres

# PostgreSQL's "lock_not_available": the lock_timeout ran out.
_LOCK_NOT_AVAILABLE = "55P03"

_MAX_ID = "SELECT COALESCE(MAX(id), 0) FROM interactions"
# An event without a time of its own happened when it was stored: whole epoch seconds
# of ``ingested_at`` (UTC), computed by the database so no datetime is parsed here.
_STORED_AT = {
    "sqlite": "CAST(strftime('%s', ingested_at) AS INTEGER)",
    "postgresql": "CAST(FLOOR(EXTRACT(EPOCH FROM ingested_at)) AS BIGINT)",
}
_READ = (
    'SELECT id, user_id, item_id, event_type, COALESCE("timestamp", {stored_at}), value '
    "FROM interactions WHERE id > {p}{until} ORDER BY id LIMIT {p}"
)


def every_visible_id_is_settled(engine: Engine) -> bool:
    """True where no event can appear below a visible id (SQLite: one writer at a time,
    ids in commit order); then the relay needs no :func:`settled_watermark`."""
    return not is_postgres(engine)


def _fetch(engine: Engine, sql: str, parameters: tuple) -> list[Any]:
    """Rows of one query on a pooled driver connection (``?`` placeholders)."""
    if engine.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
        finally:
            cursor.close()
    finally:
        connection.close()  # back to the pool, which ends any transaction the read began


def latest_id(engine: Engine) -> int:
    """The largest visible interactions id, without any lock (0 when empty): enough to
    tell an idle relay there is nothing new, not to decide what is safe to publish
    (except where :func:`every_visible_id_is_settled`)."""
    return int(_fetch(engine, _MAX_ID, ())[0][0])


def settled_watermark(engine: Engine, *, lock_timeout_ms: int = 200) -> int | None:
    """The largest interactions id below which no event can still appear (0: empty).

    None on PostgreSQL when in-flight writes did not finish within
    ``lock_timeout_ms``: ask again later.
    """
    if every_visible_id_is_settled(engine):
        return latest_id(engine)
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
            connection.execute(text("LOCK TABLE interactions IN SHARE MODE"))
            return int(connection.execute(text(_MAX_ID)).scalar_one())
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            return None
        raise


def read_events(engine: Engine, after_id: int, until_id: int | None, limit: int) -> list[Event]:
    """Stored events with ``after_id < id <= until_id`` (no upper bound when None), in
    id order, at most ``limit``."""
    until = "" if until_id is None else " AND id <= ?"
    sql = _READ.format(stored_at=_STORED_AT[engine.dialect.name], p="?", until=until)
    bounds = (int(after_id),) if until_id is None else (int(after_id), int(until_id))
    rows = _fetch(engine, sql, (*bounds, int(limit)))
    return [
        Event(
            int(event_id),
            user,
            item,
            event_type,
            float(stamp),
            # NaN is "no value" too (PostgreSQL can store one; SQLite stores NULL).
            None if value is None or math.isnan(value) else float(value),
        )
        for event_id, user, item, event_type, stamp, value in rows
    ]
