"""Store fixtures: every test runs on SQLite and on PostgreSQL.

On PostgreSQL each test gets a schema of its own (selected through ``search_path`` in
the URL) that is dropped afterwards, so tests share the ``test`` database without
seeing each other and leave nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from reco.data.schema import Frames
from reco.store.db import open_store


def postgres_schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with ``search_path`` set to ``schema`` for every connection."""
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture()
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped after the test."""
    schema = f"reco_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server is part of the dev/CI setup: say how to start it
        admin.dispose()
        pytest.fail(f"PostgreSQL at {postgres_url} is not usable ({exc}); run `make services`")
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty store on each backend (not migrated yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'reco.db'}"
    schema = request.getfixturevalue("postgres_schema")
    return postgres_schema_url(request.getfixturevalue("postgres_url"), schema)


@pytest.fixture()
def store(store_url: str) -> Iterator[Engine]:
    """A migrated, empty store on each backend; disposed after the test."""
    engine = open_store(store_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture()
def postgres_store(postgres_url: str, postgres_schema: str) -> Iterator[Engine]:
    """A migrated, empty store on PostgreSQL only (mark the test ``postgres``)."""
    engine = open_store(postgres_schema_url(postgres_url, postgres_schema))
    try:
        yield engine
    finally:
        engine.dispose()


def _frames_of(
    rows: list[tuple], *, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None
) -> Frames:
    """Frames from (user, item, timestamp[, value[, event_type[, event_id]]]) tuples."""
    columns = ["user_id", "item_id", "timestamp", "value", "event_type", "event_id"]
    width = max((len(r) for r in rows), default=3)
    padded = [list(r) + [None] * (width - len(r)) for r in rows]
    frame = pd.DataFrame(padded, columns=columns[:width])
    frame["timestamp"] = pd.array(frame["timestamp"].tolist(), dtype="Int64")
    return Frames(interactions=frame, items=items, users=users)


@pytest.fixture()
def frames_of():
    """Build Frames from (user, item, timestamp[, value[, event_type[, event_id]]]) tuples."""
    return _frames_of
