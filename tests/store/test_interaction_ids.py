"""Interaction ids are never reused: the migration that gives SQLite AUTOINCREMENT ids
keeps every row, id, index and trigger, and can be reverted."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from reco.store.db import _alembic_config, create_engine_for, write_transaction
from reco.store.events import append_events

REVISION = "0003_interaction_ids"


def _migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    config = _alembic_config()
    with write_transaction(engine) as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def _previous_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_revision(REVISION).down_revision


def _rows(engine: Engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT id, dedupe_key, user_id, item_id, source FROM interactions ORDER BY id")
        ).all()


def _sqlite_table_sql(engine: Engine) -> str:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'interactions'")
        ).scalar_one()


def test_the_migration_keeps_rows_ids_indexes_and_triggers(store_url):
    engine = create_engine_for(store_url)
    try:
        _migrate_to(engine, _previous_revision())
        with engine.begin() as connection:
            for k in range(1, 6):
                connection.execute(
                    text(
                        "INSERT INTO interactions (dedupe_key, user_id, item_id, event_type, "
                        "source) VALUES (:key, 'u', :item, 'view', 'old')"
                    ),
                    {"key": f"e:{k}", "item": f"i{k}"},
                )
            connection.execute(text("DELETE FROM interactions WHERE id IN (2, 5)"))
            connection.execute(text("CREATE INDEX ix_custom ON interactions (source)"))
            if engine.dialect.name == "sqlite":
                connection.execute(
                    text(
                        "CREATE TRIGGER no_bad BEFORE INSERT ON interactions "
                        "WHEN NEW.user_id = 'bad' BEGIN SELECT RAISE(ABORT, 'bad user'); END"
                    )
                )
        before = _rows(engine)
        assert [row[0] for row in before] == [1, 3, 4]

        _migrate_to(engine, REVISION)
        assert _rows(engine) == before
        indexes = {i["name"] for i in inspect(engine).get_indexes("interactions")}
        assert {
            "uq_interactions_dedupe_key",
            "ix_interactions_user_id_timestamp",
            "ix_interactions_item_id",
            "ix_interactions_user_id_id",
            "ix_custom",
        } <= indexes
        if engine.dialect.name == "sqlite":
            assert "AUTOINCREMENT" in _sqlite_table_sql(engine)
            with engine.connect() as connection:
                seq = connection.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = 'interactions'")
                ).scalar_one()
            assert seq == 4  # the largest id present
            with pytest.raises(DBAPIError, match="bad user"), engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO interactions (dedupe_key, user_id, item_id, event_type, "
                        "source) VALUES ('e:x', 'bad', 'i', 'view', 'new')"
                    )
                )
        # The newest row goes, and the next one still gets a larger id.
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM interactions WHERE id = 4"))
        append_events(engine, [{"user_id": "u", "item_id": "i9"}])
        assert _rows(engine)[-1][0] > 4

        _migrate_to(engine, _previous_revision(), down=True)
        assert [row[0] for row in _rows(engine)][:2] == [1, 3]
        indexes = {i["name"] for i in inspect(engine).get_indexes("interactions")}
        assert "ix_interactions_user_id_id" not in indexes and "ix_custom" in indexes
        if engine.dialect.name == "sqlite":
            assert "AUTOINCREMENT" not in _sqlite_table_sql(engine)
    finally:
        engine.dispose()
