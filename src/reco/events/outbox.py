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
are serialised and ids are handed out in commit order, so the largest id is settled.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from reco.events.event import Event
from reco.store.db import is_postgres
from reco.store.tables import interactions

# PostgreSQL's "lock_not_available": the lock_timeout ran out.
_LOCK_NOT_AVAILABLE = "55P03"

_MAX_ID = select(func.coalesce(func.max(interactions.c.id), 0))


def latest_id(engine: Engine) -> int:
    """The largest visible interactions id, without any lock (0 when empty): enough to
    tell an idle relay there is nothing new, not to decide what is safe to publish."""
    with engine.connect() as connection:
        return int(connection.execute(_MAX_ID).scalar_one())


def settled_watermark(engine: Engine, *, lock_timeout_ms: int = 200) -> int | None:
    """The largest interactions id below which no event can still appear (0: empty).

    None on PostgreSQL when in-flight writes did not finish within
    ``lock_timeout_ms``: ask again later.
    """
    if not is_postgres(engine):
        return latest_id(engine)
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
            connection.execute(text("LOCK TABLE interactions IN SHARE MODE"))
            return int(connection.execute(_MAX_ID).scalar_one())
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            return None
        raise


def read_events(engine: Engine, after_id: int, until_id: int, limit: int) -> list[Event]:
    """Stored events with ``after_id < id <= until_id``, in id order, at most ``limit``."""
    query = (
        select(
            interactions.c.id,
            interactions.c.user_id,
            interactions.c.item_id,
            interactions.c.event_type,
            interactions.c.timestamp,
            interactions.c.value,
            interactions.c.ingested_at,
        )
        .where(interactions.c.id > int(after_id), interactions.c.id <= int(until_id))
        .order_by(interactions.c.id)
        .limit(int(limit))
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Event(
            id=int(row.id),
            user=row.user_id,
            item=row.item_id,
            event_type=row.event_type,
            timestamp=_epoch(row.ingested_at) if row.timestamp is None else float(row.timestamp),
            value=None if row.value is None or math.isnan(row.value) else float(row.value),
        )
        for row in rows
    ]


def _epoch(moment: datetime) -> float:
    """Epoch seconds of a stored datetime (SQLite hands them back without a zone: UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return float(int(moment.timestamp()))
