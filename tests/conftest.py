"""Fixtures shared by the whole suite: where the MovieLens data is, real backends."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from reco.store.db import open_store

REPO = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """Folder with ml-100k/ and ml-latest-small/: RECO_DATA_DIR, else ../shared/data."""
    configured = os.environ.get("RECO_DATA_DIR")
    return Path(configured) if configured else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared MovieLens folder; skips the test with the reason when it is absent."""
    path = shared_data_path()
    if not (path / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens data not found under {path}; set RECO_DATA_DIR to a copy")
    return path


@pytest.fixture(scope="session")
def ml100k_binary(shared_data_dir: Path):
    """ml-100k's u.data (user, item, timestamp) as a Dataset, every row a binary positive."""
    import pandas as pd

    from reco.data.dataset import Dataset

    frame = pd.read_csv(
        shared_data_dir / "ml-100k" / "u.data",
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    return Dataset.from_frames(frame[["user_id", "item_id", "timestamp"]])


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the test PostgreSQL database (RECO_TEST_POSTGRES_URL overrides)."""
    return os.environ.get(
        "RECO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis server (RECO_TEST_REDIS_URL overrides)."""
    return os.environ.get("RECO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator:
    """A client of the test Redis (decoded responses); fails with how to start it."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is not reachable ({exc}); run `make services`")
    yield client
    client.close()


@pytest.fixture()
def prefix(redis_client) -> Iterator[str]:
    """A Redis key prefix unique to the test; every key under it is deleted afterwards."""
    value = f"reco:test:{uuid.uuid4().hex[:12]}:"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, to stop and restart (AOF fsync'd per write
    when ``persistent``, nothing kept otherwise)."""

    def __init__(self, folder: Path, *, persistent: bool) -> None:
        self.folder = folder
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--save", ""]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no final save)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory of throwaway Redis servers, killed after the test."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    servers: list[RedisServer] = []

    def make(*, persistent: bool) -> RedisServer:
        folder = tmp_path / f"redis-{len(servers)}"
        folder.mkdir()
        server = RedisServer(folder, persistent=persistent)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.kill()


# -- stores: every store test runs on SQLite and on PostgreSQL ---------------------------
# On PostgreSQL each test gets a schema of its own (selected through ``search_path`` in
# the URL) that is dropped afterwards, so tests share the ``test`` database without
# seeing each other and leave nothing behind.


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
