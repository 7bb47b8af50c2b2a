"""Engines and migrations: reachable or clearly not, WAL on SQLite, idempotent upgrades."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url

from reco.errors import ConfigurationError, RecoError
from reco.store import counts, ingest, open_store
from reco.store.db import (
    create_engine_for,
    current_revision,
    head_revision,
    migrate,
    redacted,
    write_transaction,
    writer_lock,
)
from reco.store.tables import metadata


def test_open_store_creates_every_table_at_head(store):
    tables = set(inspect(store).get_table_names())
    assert {"users", "items", "interactions", "model_versions", "alembic_version"} <= tables
    assert current_revision(store) == head_revision()


def test_migrate_is_idempotent_and_keeps_data(store, store_url, frames_of):
    ingest(store, frames_of([("u1", "i1", 1)]), source="first")
    migrate(store)
    migrate(store)
    again = open_store(store_url)
    try:
        assert current_revision(again) == head_revision()
        assert counts(again)["interactions"] == 1
    finally:
        again.dispose()


def test_migration_creates_exactly_the_declared_tables(store):
    # Autogenerate finds no difference between the migrated database and tables.py.
    with store.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_interaction_indexes_exist(store):
    indexes = {i["name"]: i for i in inspect(store).get_indexes("interactions")}
    assert indexes["uq_interactions_dedupe_key"]["unique"]
    assert indexes["ix_interactions_user_id_timestamp"]["column_names"] == ["user_id", "timestamp"]
    assert indexes["ix_interactions_item_id"]["column_names"] == ["item_id"]
    assert indexes["ix_interactions_user_id_id"]["column_names"] == ["user_id", "id"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(tmp_path: Path):
    path = tmp_path / "deep" / "folder" / "reco.db"  # parent folders are created
    engine = open_store(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_sqlite_transactions_really_roll_back(tmp_path: Path):
    # The engine issues its own BEGIN; a rolled-back DDL + insert must leave no trace.
    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO users (user_id, attributes) VALUES ('u', '{}')")
            transaction.rollback()
        assert "scratch" not in inspect(engine).get_table_names()
        assert counts(engine)["users"] == 0
    finally:
        engine.dispose()


def _other_process_can_lock(path: Path) -> bool:
    """Whether another process gets an exclusive flock on ``path`` right now."""
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "try:\n"
        "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(1)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], timeout=30)
    return done.returncode == 0


def test_sqlite_writers_of_every_process_queue_on_one_writer_lock(tmp_path: Path):
    # SQLite's own busy handler makes a blocked writer sleep up to 100 ms at a time; the
    # writer lock wakes the next writer, of any process, as soon as one commits.
    database = tmp_path / "reco.db"
    engine = open_store(f"sqlite:///{database}")
    lock_file = Path(f"{database}.writer-lock")
    try:
        with write_transaction(engine) as connection:
            connection.exec_driver_sql("INSERT INTO users (user_id, attributes) VALUES ('u', '{}')")
            assert not _other_process_can_lock(lock_file)
            with writer_lock(engine):  # reentrant within the thread
                pass
            assert not _other_process_can_lock(lock_file)
        assert _other_process_can_lock(lock_file)
        assert counts(engine)["users"] == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_unreachable_postgres_names_the_url_without_password_and_the_fix():
    url = "postgresql+psycopg://reco:s3cret@127.0.0.1:1/reco"
    with pytest.raises(RecoError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "127.0.0.1:1/reco" in message
    assert "s3cret" not in message
    assert "RECO_DATABASE_URL" in message


def test_sqlite_folder_that_cannot_be_created_gives_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RecoError, match="RECO_DATABASE_URL"):
        open_store(f"sqlite:///{blocker / 'sub' / 'reco.db'}")


def test_unsupported_or_broken_urls_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="SQLite or PostgreSQL"):
        create_engine_for("mysql://root:pw@localhost/reco")
    with pytest.raises(ConfigurationError, match="cannot be parsed"):
        create_engine_for("not a url")


def test_plain_postgresql_urls_use_psycopg3_and_passwords_are_hidden():
    engine = create_engine_for("postgresql://reco:s3cret@db.example:5432/reco")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()
    assert redacted("postgresql://reco:s3cret@db/reco") == "postgresql://reco:***@db/reco"


@pytest.mark.postgres
def test_migrating_into_a_missing_schema_says_what_to_check(postgres_url):
    url = make_url(postgres_url).update_query_dict({"options": "-csearch_path=no_such_schema"})
    with pytest.raises(RecoError, match="search_path exists"):
        open_store(url.render_as_string(hide_password=False))
