"""Fixtures shared by the whole suite: where the MovieLens data is, real backends."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
