"""Initial store: users, items, interactions (event log) and model_versions.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the sizes at the time of this revision: a later change to the
# constants in reco.store.tables must come with a new revision, not edit this one.
ID = 512
DEDUPE_KEY = 514
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(ID), nullable=False),
        sa.Column("attributes", JSON_DOC, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(ID), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("categories", sa.Text(), nullable=True),
        sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("attributes", JSON_DOC, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("item_id", name="pk_items"),
    )
    op.create_table(
        "interactions",
        sa.Column(
            "id",
            sa.Integer().with_variant(sa.BigInteger(), "postgresql"),
            nullable=False,
            autoincrement=True,
        ),
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
        sa.PrimaryKeyConstraint("id", name="pk_interactions"),
    )
    op.create_index("uq_interactions_dedupe_key", "interactions", ["dedupe_key"], unique=True)
    op.create_index("ix_interactions_user_id_timestamp", "interactions", ["user_id", "timestamp"])
    op.create_index("ix_interactions_item_id", "interactions", ["item_id"])
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", JSON_DOC, nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("data_fingerprint", sa.String(128), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("version", name="pk_model_versions"),
    )
    op.create_index(
        "uq_model_versions_one_current",
        "model_versions",
        ["is_current"],
        unique=True,
        postgresql_where=sa.text("is_current"),
        sqlite_where=sa.text("is_current"),
    )


def downgrade() -> None:
    """Drop everything the upgrade created."""
    op.drop_index("uq_model_versions_one_current", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_interactions_item_id", table_name="interactions")
    op.drop_index("ix_interactions_user_id_timestamp", table_name="interactions")
    op.drop_index("uq_interactions_dedupe_key", table_name="interactions")
    op.drop_table("interactions")
    op.drop_table("items")
    op.drop_table("users")
