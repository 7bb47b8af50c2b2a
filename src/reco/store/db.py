"""Engines and migrations: open the store on SQLite or PostgreSQL, bring it to the latest schema.

``open_store(url)`` is what callers want: it builds the engine, checks the database is
reachable (a :class:`~reco.errors.RecoError` naming the URL, password hidden, when not)
and applies any pending Alembic migration. No ``alembic.ini`` is needed: the migration
scripts ship inside the package.
"""

from __future__ import annotations

import fcntl
import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from reco.errors import ConfigurationError, RecoError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Seconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_S = 30
# Connections a SQLite engine keeps open for reuse (each is a file handle and a cache).
SQLITE_POOL_SIZE = 24
# Seconds to wait for a PostgreSQL server to accept the connection.
POSTGRES_CONNECT_TIMEOUT_S = 10
# Key of the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK_KEY = zlib.crc32(b"reco.store.migrate")
# Execution option naming how a SQLite transaction begins (DEFERRED or IMMEDIATE).
SQLITE_BEGIN = "reco_sqlite_begin"

_HOW_TO_FIX = (
    "Set RECO_DATABASE_URL to a database you can reach, e.g. "
    "sqlite:////path/to/reco.db or postgresql+psycopg://user:password@host:5432/reco "
    "(or unset it to use SQLite under RECO_HOME)."
)


def redacted(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***``, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _parse_url(url: str | URL) -> URL:
    """Parse and normalise a store URL; plain ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"The database URL {url!r} cannot be parsed ({exc}). {_HOW_TO_FIX}"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"The database URL {redacted(parsed)} uses {backend!r}; reco's store runs on "
            f"SQLite or PostgreSQL. {_HOW_TO_FIX}"
        )
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file a SQLite URL names, or None for in-memory and URI databases."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module: it would not BEGIN before
    # SELECT or DDL, which breaks snapshots and transactional migrations.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        # WAL lets readers (the service) run while a writer (ingest) works; the mode is
        # stored in the file, so only set it when it is not already on.
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() not in ("wal", "memory"):
            cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL is durable against application crashes and much faster.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    # On the driver's connection: through SQLAlchemy's statement machinery this BEGIN
    # took about a tenth of a service worker answering uncached recommendations.
    connection.connection.driver_connection.execute(f"BEGIN {mode}")


def create_engine_for(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, configured for the store.

    SQLite: the parent folder is created; WAL journal, foreign keys, a busy timeout of
    30 s and real transactions (BEGIN before every statement). PostgreSQL: plain
    ``postgresql://`` URLs use psycopg 3; stale pooled connections are detected.
    Nothing connects yet; see :func:`open_store`.
    """
    parsed = _parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _create_sqlite_engine(parsed)
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(
            f"The driver for {redacted(parsed)} is not installed ({exc}). For PostgreSQL "
            "install it with: pip install 'reco[postgres]'."
        ) from None


def _create_sqlite_engine(url: URL) -> Engine:
    path = _sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecoError(
                f"Cannot create the folder {path.parent} for the SQLite store "
                f"{redacted(url)}: {exc}. {_HOW_TO_FIX}"
            ) from None
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        # A service worker answers from up to 40 threads at once: with the default 5
        # pooled connections most requests opened (and set up) a new one and closed it.
        pool_size=SQLITE_POOL_SIZE,
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def is_postgres(engine: Engine | Connection) -> bool:
    """True when the engine (or connection) talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that will write; commits when the block ends.

    On SQLite the transaction takes the write lock at once (BEGIN IMMEDIATE), so two
    writers queue instead of failing when a read turns into a write. Writers of one
    database file first queue on its writer lock (:class:`_WriterLock`).
    """
    with engine.connect() as connection:
        connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        # Taken after the connection is checked out: other writers wait for this one's
        # transaction only, not for its Python set-up.
        with writer_lock(engine), connection.begin():
            yield connection


def writer_lock(engine: Engine) -> AbstractContextManager[None]:
    """Hold the SQLite file's writer lock (:class:`_WriterLock`) for a block, e.g. to
    gather what to write while waiting for it; on PostgreSQL, or SQLite without a file,
    nothing. :func:`write_transaction` takes it too (reentrant within a thread)."""
    lock = _writer_lock(engine)
    return lock.held() if lock is not None else nullcontext()


class _WriterLock:
    """Queues the writers of one SQLite file, across threads and processes.

    SQLite makes a writer that finds the file locked sleep and retry (1, 2, 5 ... up to
    100 ms at a time), so writers of several service workers left the database idle
    between their transactions: single events per request stalled at about 700/s with a
    p99 near a second. An exclusive ``flock`` on ``<database>.writer-lock`` wakes the
    next writer the moment the previous one is done. Reentrant within a thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block."""
        with self._threads:
            if self._depth == 0:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._file(), fcntl.LOCK_UN)

    def _file(self) -> int:
        # A forked child must not share the parent's open file: flock belongs to it.
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RecoError(
                    f"Cannot open the SQLite store's writer lock {self.path}: {exc}. The "
                    "store's folder must be writable by every reco process using it."
                ) from None
            self._pid = os.getpid()
        return self._fd


_writer_locks: dict[Path, _WriterLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(engine: Engine) -> _WriterLock | None:
    """The writer lock of the engine's SQLite file (None: PostgreSQL or no file)."""
    if engine.dialect.name != "sqlite":
        return None
    database = _sqlite_file(engine.url)
    if database is None:
        return None
    # Keyed by the name as given (resolving it is a few system calls): two names of one
    # file get two locks, whose flocks still exclude each other.
    with _writer_locks_guard:
        lock = _writer_locks.get(database)
        if lock is None:
            lock = _writer_locks[database] = _WriterLock(Path(f"{database}.writer-lock"))
        return lock


def check_reachable(engine: Engine) -> None:
    """Connect once; raise a RecoError naming the URL and the fix when that fails."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RecoError(
            f"Cannot reach the store database at {redacted(engine.url)}: {reason}. "
            f"Check that the server is running and accepts connections. {_HOW_TO_FIX}"
        ) from None


def _alembic_config() -> Config:
    config = Config()
    # configparser interpolation would eat a '%' in the install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this version of reco."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RecoError(f"No migrations found under {MIGRATIONS_DIR}; the install is broken.")
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest schema (Alembic ``upgrade head``); idempotent.

    Runs in one transaction, serialised against concurrent migrators (an advisory
    lock on PostgreSQL, the write lock on SQLite), so two processes starting at once
    do not both create the tables.
    """
    check_reachable(engine)
    config = _alembic_config()
    try:
        with write_transaction(engine) as connection:
            if is_postgres(connection):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RecoError(
            f"Could not bring the store at {redacted(engine.url)} to the current schema "
            f"(nothing was changed): {reason}. Check that the database user may create "
            "tables there (on PostgreSQL: that the schema in search_path exists)."
        ) from exc


def open_store(url: str) -> Engine:
    """Create the engine for ``url``, check it is reachable and migrate it to the latest schema."""
    engine = create_engine_for(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
