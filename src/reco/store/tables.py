"""The store's tables (SQLAlchemy Core), mirrored exactly by the Alembic migrations.

* ``users`` and ``items`` hold metadata, one row per id, upserted on ingest.
* ``interactions`` is an append-only event log. ``dedupe_key`` makes re-ingesting the
  same events a no-op; there are no foreign keys, because events may name users and
  items nobody described. Ids grow with every insert and are never reused, and
  rows become visible in id order (see :mod:`reco.store.postgres_bulk`), so
  "id > watermark" means "stored after the watermark was read".
* ``model_versions`` records every trained model and which one is served.
* ``api_keys`` holds the service's keys: only a SHA-256 of each secret, its role, and
  when it was revoked.

Deleting a user or an item through the service leaves a tombstone (``deleted_at``) so
that every worker, and the next training run, knows it is gone.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

# Longest external id (user, item, event id, event type) the store accepts; longer ids
# are rejected at ingest with a ValidationError instead of a database error.
MAX_ID_LENGTH = 512
# Dedupe keys are "e:" + event id or "h:" + a 32-hex-digit hash.
DEDUPE_KEY_LENGTH = MAX_ID_LENGTH + 2

# JSONB on PostgreSQL: indexable, and `||` merges attributes key-wise on upsert.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")

# Stable constraint names, so migrations can refer to them on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("attributes", JsonDocument, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
)

items = Table(
    "items",
    metadata,
    Column("item_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("title", Text, nullable=True),
    Column("text", Text, nullable=True),
    Column("categories", Text, nullable=True),
    Column("available", Boolean, nullable=False, server_default=true()),
    Column("attributes", JsonDocument, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
)

interactions = Table(
    "interactions",
    metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True),
    Column("dedupe_key", String(DEDUPE_KEY_LENGTH), nullable=False),
    Column("event_id", String(MAX_ID_LENGTH), nullable=True),
    Column("user_id", String(MAX_ID_LENGTH), nullable=False),
    Column("item_id", String(MAX_ID_LENGTH), nullable=False),
    Column("timestamp", BigInteger, nullable=True),
    Column("value", Double, nullable=True),
    Column("event_type", String(MAX_ID_LENGTH), nullable=False),
    Column("source", Text, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A unique index rather than a constraint: a bulk load into an empty table drops
    # and rebuilds every index, which is twice as fast as maintaining them row by row.
    Index("uq_interactions_dedupe_key", "dedupe_key", unique=True),
    Index(None, "user_id", "timestamp"),
    Index(None, "item_id"),
    # A user's events after a watermark (events_since), in id order, from one range.
    Index(None, "user_id", "id"),
    # SQLite: ids never come back after the newest rows are deleted, so an event stored
    # later always has an id above every earlier watermark. PostgreSQL uses a sequence.
    sqlite_autoincrement=True,
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(255), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("path", Text, nullable=False),
    Column("metrics", JsonDocument, nullable=False),
    Column("config_hash", String(128), nullable=False),
    Column("data_fingerprint", String(128), nullable=False),
    Column("is_current", Boolean, nullable=False, server_default=false()),
    # At most one current version, enforced by the database itself.
    Index(
        "uq_model_versions_one_current",
        "is_current",
        unique=True,
        postgresql_where=text("is_current"),
        sqlite_where=text("is_current"),
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    # SHA-256 hex of the secret: keys are long random strings, so a fast hash is safe
    # and a lookup by hash is one index probe per request.
    Column("key_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("uq_api_keys_key_hash", "key_hash", unique=True),
)
