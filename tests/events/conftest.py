"""Fixtures for the event path: real Redis (db 15, a key prefix per test, cleaned up),
SQLite stores in tmp_path, PostgreSQL schemas per test, throwaway Redis servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, make_url, text

from reco.config import EventsConfig, Settings
from reco.store.db import open_store


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store in tmp_path."""
    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    yield engine
    engine.dispose()


@pytest.fixture()
def postgres_store(postgres_url: str) -> Iterator[Engine]:
    """A migrated store in a PostgreSQL schema of its own, dropped afterwards."""
    schema = f"reco_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {postgres_url} is not usable ({exc}); run `make services`")
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = open_store(url.render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Engine:
    """A migrated store on each backend."""
    name = "sqlite_store" if request.param == "sqlite" else "postgres_store"
    return request.getfixturevalue(name)


@pytest.fixture()
def redis_settings(tmp_path: Path, redis_url: str, prefix: str) -> Callable[..., Settings]:
    """Settings for the Redis bus under the test's prefix; keyword arguments override
    EventsConfig fields."""

    def build(**events: object) -> Settings:
        config = {
            "bus": "redis",
            "stream": prefix + "stream",
            "key_prefix": prefix + "f:",
            "group": "processors",
            **events,
        }
        return Settings(
            home=tmp_path, redis_url=redis_url, events=EventsConfig.model_validate(config)
        )

    return build


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


def make_events(count: int, *, start: int = 0, users: int = 7, items: int = 13) -> list[dict]:
    """``count`` event records over a few users and items, types cycling, each with an
    event id (so appending them twice stores nothing new)."""
    types = ["view", "click", "like", "purchase", "dislike", "rating"]
    return [
        {
            "user_id": f"u{k % users}",
            "item_id": f"i{(k * 7) % items}",
            "event_type": types[k % len(types)],
            "value": float(k % 5 + 1),
            "timestamp": 1_700_000_000 + k * 60,
            "event_id": f"e{k}",
        }
        for k in range(start, start + count)
    ]


@pytest.fixture()
def events_factory() -> Callable[..., list[dict]]:
    """:func:`make_events` as a fixture (test modules cannot import conftest)."""
    return make_events


def pump_until_idle(relay, consumer, *, rounds: int = 10_000) -> None:
    """Run relay and consumer rounds (no blocking) until neither moves anything."""
    for _ in range(rounds):
        moved = relay.run_once() if relay is not None else 0
        applied = consumer.run_once(block=False) if consumer is not None else 0
        if not moved and not applied:
            return
    raise AssertionError(f"still busy after {rounds} rounds")


@pytest.fixture()
def pump() -> Callable[..., None]:
    """:func:`pump_until_idle` as a fixture."""
    return pump_until_idle
