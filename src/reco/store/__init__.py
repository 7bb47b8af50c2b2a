"""The store: SQLite or PostgreSQL tables for users, items, the interaction log and
model versions, with Alembic migrations and fast bulk ingest.

* :mod:`reco.store.db` — ``create_engine_for``, ``migrate``, ``open_store``.
* :mod:`reco.store.repository` — ``ingest``, ``load_frames``, ``counts``, model versions.
* :mod:`reco.store.tables` — the table definitions.
"""

from reco.store.db import create_engine_for, migrate, open_store
from reco.store.repository import (
    IngestReport,
    counts,
    current_model_version,
    ingest,
    list_model_versions,
    load_frames,
    record_model_version,
    set_current_version,
)

__all__ = [
    "IngestReport",
    "counts",
    "create_engine_for",
    "current_model_version",
    "ingest",
    "list_model_versions",
    "load_frames",
    "migrate",
    "open_store",
    "record_model_version",
    "set_current_version",
]
