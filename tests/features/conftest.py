"""Fixtures for the online features: the test Redis (db 15) under a prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis; fails with how to start it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is not reachable ({exc}); run `make services`")
    yield client
    client.close()


@pytest.fixture()
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix unique to the test; its keys are deleted afterwards."""
    value = f"test:features:{uuid.uuid4().hex[:10]}:"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*", count=1000))
    if keys:
        redis_client.delete(*keys)
