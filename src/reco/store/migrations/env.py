"""Alembic environment for reco's store, driven from code by :func:`reco.store.db.migrate`.

The caller hands over an open connection (``config.attributes["connection"]``) so the
migration runs inside the caller's transaction and lock; a URL in the config
(``sqlalchemy.url``) works too, for developers running ``alembic`` by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from reco.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as owned:
            _run(owned)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
