"""Interaction ids that never come back, and an index for reading a user's new events.

* SQLite: ``interactions`` is rebuilt with ``INTEGER PRIMARY KEY AUTOINCREMENT``. Without
  it SQLite gives a new row max(id) + 1, so once the newest rows are deleted (a user
  forgotten) the next event can take an id at or below a trained model's
  ``store_watermark``, and ``events_since(watermark)`` never sees it. Rows, ids, indexes
  and triggers are kept; ``sqlite_sequence`` starts at the largest id present.
  PostgreSQL ids come from a sequence, which never goes back.
* Both: ``ix_interactions_user_id_id`` on (user_id, id), so ``events_since`` reads
  exactly the user's rows after a watermark, in id order, from one index range.

Revision ID: 0003_interaction_ids
Revises: 0002_service
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_interaction_ids"
down_revision: str | None = "0002_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the sizes at the time of this revision (see 0001_initial).
ID = 512
DEDUPE_KEY = 514
_REBUILT = "_interactions_rebuilt"
_COLUMNS = (
    'id, dedupe_key, event_id, user_id, item_id, "timestamp", value, event_type, source, '
    "ingested_at"
)


def _create_interactions(name: str, *, autoincrement: bool) -> None:
    """The interactions table as 0001 made it, with or without AUTOINCREMENT.

    SQLite only writes AUTOINCREMENT on an inline ``INTEGER PRIMARY KEY`` column, so the
    primary key has no constraint name then (SQLite has no use for one).
    """
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("dedupe_key", sa.String(DEDUPE_KEY), nullable=False),
        sa.Column("event_id", sa.String(ID), nullable=True),
        sa.Column("user_id", sa.String(ID), nullable=False),
        sa.Column("item_id", sa.String(ID), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("event_type", sa.String(ID), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name=None if autoincrement else "pk_interactions"),
        sqlite_autoincrement=autoincrement,
    )


def _rebuild_sqlite(*, autoincrement: bool) -> None:
    """Copy ``interactions`` into a new table (same rows and ids), swap it in, and
    recreate every index and trigger the old one had, from their own SQL."""
    bind = op.get_bind()
    dependants = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'interactions' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
    ).all()
    _create_interactions(_REBUILT, autoincrement=autoincrement)
    op.execute(
        f"INSERT INTO {_REBUILT} ({_COLUMNS}) SELECT {_COLUMNS} FROM interactions ORDER BY id"
    )
    op.drop_table("interactions")
    op.rename_table(_REBUILT, "interactions")
    for (ddl,) in dependants:
        op.execute(ddl)
    op.execute(f"DELETE FROM sqlite_sequence WHERE name IN ('interactions', '{_REBUILT}')")
    if autoincrement:
        # Ids continue after the largest one present (ids of rows already deleted
        # before this migration cannot be known any more).
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) "
            "SELECT 'interactions', COALESCE(MAX(id), 0) FROM interactions"
        )


def upgrade() -> None:
    """AUTOINCREMENT ids on SQLite; an index on (user_id, id) everywhere."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(autoincrement=True)
    op.create_index("ix_interactions_user_id_id", "interactions", ["user_id", "id"])


def downgrade() -> None:
    """Drop the index; on SQLite rebuild the table without AUTOINCREMENT."""
    op.drop_index("ix_interactions_user_id_id", table_name="interactions")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(autoincrement=False)
