"""Fixtures for the event path: real Redis (db 15, a key prefix per test, cleaned up),
SQLite stores in tmp_path, PostgreSQL schemas per test, throwaway Redis servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from reco.config import EventsConfig, Settings
from reco.store.db import open_store


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store in tmp_path."""
    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    yield engine
    engine.dispose()


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
