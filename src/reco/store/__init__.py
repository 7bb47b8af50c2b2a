"""The store: SQLite or PostgreSQL tables for users, items, the interaction log and
model versions, with Alembic migrations and fast bulk ingest.

* :mod:`reco.store.db` — ``create_engine_for``, ``migrate``, ``open_store``.
* :mod:`reco.store.repository` — ``ingest``, ``load_frames``, ``counts``, model versions.
* :mod:`reco.store.events` — live events: ``append_events``, ``events_since``, ``watermark``.
* :mod:`reco.store.entities` — users and items one at a time (PUT, GET, DELETE).
* :mod:`reco.store.tables` — the table definitions.

Importing the package connects to nothing; every function takes the engine it uses.
"""

from reco.store.db import create_engine_for, migrate, open_store
from reco.store.entities import (
    delete_item,
    delete_user,
    get_item,
    get_user,
    put_item,
    put_user,
    unavailable_items,
)
from reco.store.events import AppendResult, append_events, events_frame, events_since, watermark
from reco.store.repository import (
    IngestReport,
    StoreFrames,
    counts,
    current_model_version,
    ingest,
    list_model_versions,
    load_frames,
    record_model_version,
    set_current_version,
)

__all__ = [
    "AppendResult",
    "IngestReport",
    "StoreFrames",
    "append_events",
    "counts",
    "create_engine_for",
    "current_model_version",
    "delete_item",
    "delete_user",
    "events_frame",
    "events_since",
    "get_item",
    "get_user",
    "ingest",
    "list_model_versions",
    "load_frames",
    "migrate",
    "open_store",
    "put_item",
    "put_user",
    "record_model_version",
    "set_current_version",
    "unavailable_items",
    "watermark",
]
