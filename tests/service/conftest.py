"""Fixtures of the service tests: a small model trained once on a slice of ml-100k
(from the store, so its manifest records the store watermark), and apps built on
copies of that home with real backends: SQLite, PostgreSQL, Redis.

``service`` gives a running app (lifespan entered) with a key per role; the
``backend`` parameter picks the store and cache: every test that asks for
``any_backend_service`` runs three times.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reco.config import PipelineConfig, RankerConfig, ServiceConfig, Settings
from reco.data.schema import Frames
from reco.registry import ModelRegistry
from reco.service.app import create_app
from reco.service.keys import Role, create_key
from reco.store.db import open_store

# Users 1..N of ml-100k: about 100 interactions each, a few seconds to train.
SLICE_USERS = 200
FAST_PARAMS = {
    "itemknn": {"k": 50},
    "als": {"factors": 16, "iterations": 5},
    "ease": {"l2": 50.0},
}
# Sources fixed here (no two-tower network): the service does not depend on which.
FAST_PIPELINE = PipelineConfig(
    sources={
        "ease": 100,
        "itemknn": 100,
        "als": 50,
        "popularity": 30,
        "segment_popularity": 30,
        "trending": 30,
        "content": 30,
    },
    ranker=RankerConfig(max_rounds=100, early_stopping_rounds=15),
)
# Quick watchers, a generous rate limit unless a test asks for a low one.
TEST_SERVICE = {
    "reload_check_seconds": 0.1,
    "catalog_refresh_seconds": 0.2,
    "rate_limit_per_second": 10_000.0,
    "rate_limit_burst": 10_000,
}


@dataclass(frozen=True)
class TrainedHome:
    """A RECO_HOME holding a SQLite store with the slice and two model versions."""

    path: Path
    frames: Frames
    versions: tuple[str, str]  # (current, another one)


@pytest.fixture(scope="session")
def slice_frames(shared_data_dir: Path) -> Frames:
    """ml-100k's first users' ratings, with every item and user described."""
    from reco.data.movielens import load_path

    frames = load_path(shared_data_dir / "ml-100k")
    ratings = frames.interactions
    keep = ratings["user_id"].astype(int) <= SLICE_USERS
    return Frames(ratings[keep].reset_index(drop=True), frames.items, frames.users)


@pytest.fixture(scope="session")
def trained_home(slice_frames: Frames, tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    """Ingest the slice into a SQLite store, train on it, publish a second version."""
    from reco.store.repository import ingest, load_frames
    from reco.training.job import train

    home = tmp_path_factory.mktemp("service-home")
    settings = Settings(home=home, pipeline=FAST_PIPELINE, model_params=FAST_PARAMS)
    engine = open_store(settings.resolved_database_url)
    try:
        ingest(engine, slice_frames, source="ml-100k slice")
        result = train(load_frames(engine), settings)
    finally:
        engine.dispose()
    other = republish(ModelRegistry(settings.models_dir), result.version)
    return TrainedHome(home, slice_frames, (result.version, other))


def republish(registry: ModelRegistry, version: str) -> str:
    """Publish a copy of ``version`` as a new version (not promoted); its name."""
    source = registry.get(version)
    manifest = {
        k: v for k, v in source.manifest.items() if k not in ("version", "created_at", "files")
    }
    with registry.new_version(manifest) as (name, folder):
        for path in source.path.rglob("*"):
            if path.is_file() and path.name != "manifest.json":
                target = folder / path.relative_to(source.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return name


def copy_home(trained: TrainedHome, where: Path) -> Path:
    """A private copy of the trained home (store and registry) a test may change."""
    target = where / "home"
    shutil.copytree(trained.path, target, symlinks=True)
    return target


@dataclass
class Service:
    """A running app, its client, and an API key secret per role."""

    client: TestClient
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def state(self):
        """The worker's ServiceState."""
        return self.client.app.state.service

    def headers(self, role: str = "read", **more: str) -> dict[str, str]:
        """Headers authenticating with the key of ``role``."""
        return {"Authorization": f"Bearer {self.keys[role]}", **more}

    def _merged(self, role: str, kwargs: dict[str, Any]) -> dict[str, str]:
        return {**self.headers(role), **kwargs.pop("headers", {})}

    def get(self, url: str, role: str = "read", **kwargs: Any):
        """GET with the key of ``role``."""
        return self.client.get(url, headers=self._merged(role, kwargs), **kwargs)

    def post(self, url: str, role: str = "read", **kwargs: Any):
        """POST with the key of ``role``."""
        return self.client.post(url, headers=self._merged(role, kwargs), **kwargs)

    def put(self, url: str, role: str = "write", **kwargs: Any):
        """PUT with the key of ``role``."""
        return self.client.put(url, headers=self._merged(role, kwargs), **kwargs)

    def delete(self, url: str, role: str = "write", **kwargs: Any):
        """DELETE with the key of ``role``."""
        return self.client.delete(url, headers=self._merged(role, kwargs), **kwargs)


def add_keys(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """Create a key per role in the store; (secrets, key ids) by role name."""
    engine = open_store(settings.resolved_database_url)
    try:
        secrets, ids = {}, {}
        for role in Role:
            record, secret = create_key(engine, f"test-{role.value}", role)
            secrets[role.value], ids[role.value] = secret, record.key_id
    finally:
        engine.dispose()
    return secrets, ids


ServiceFactory = Callable[..., Service]


@pytest.fixture()
def make_service(tmp_path: Path, trained_home: TrainedHome) -> Iterator[ServiceFactory]:
    """Build and start services on a private copy of the trained home.

    ``make_service(database_url=None, redis=None, **service_settings)``: ``redis`` is a
    (cache factory, limiter factory) pair, see :func:`redis_factories`.
    """
    started: list[TestClient] = []
    home = copy_home(trained_home, tmp_path)

    def make(
        database_url: str | None = None,
        redis: tuple[Callable, Callable] | None = None,
        keys: bool = True,
        **service: Any,
    ) -> Service:
        settings = Settings(
            home=home,
            database_url=database_url,
            service=ServiceConfig(**(TEST_SERVICE | service)),
        )
        secrets, ids = add_keys(settings) if keys else ({}, {})
        factories = {}
        if redis is not None:
            factories = {"cache_factory": redis[0], "limiter_factory": redis[1]}
        app = create_app(settings, **factories)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        started.append(client)
        return Service(client, settings, secrets, ids)

    yield make
    for client in reversed(started):
        client.__exit__(None, None, None)


@pytest.fixture()
def service(make_service: ServiceFactory) -> Service:
    """The service on SQLite with the in-process cache and rate limiter."""
    return make_service()


@pytest.fixture()
def postgres_store_url(postgres_store, slice_frames: Frames) -> str:
    """URL of a PostgreSQL store (a schema of this test's own, see tests/conftest.py)
    holding the same slice, so the same interaction ids as the SQLite store the model
    was trained from."""
    from reco.store.repository import ingest

    ingest(postgres_store, slice_frames, source="ml-100k slice")
    return postgres_store.url.render_as_string(hide_password=False)


@pytest.fixture()
def redis_factories(redis_url: str) -> Iterator[tuple[Callable, Callable]]:
    """Cache and rate limiter in Redis under a key prefix of this test's own."""
    import redis as redis_lib

    from reco.service.cache import MemoryCache, RedisCache, TwoLevelCache
    from reco.service.ratelimit import RedisRateLimiter

    prefix = f"reco-test:{uuid.uuid4().hex[:10]}:"
    client = redis_lib.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        pytest.fail(f"Redis at {redis_url} is not usable ({exc}); run `make services`")

    def cache(settings: Settings):
        service = settings.service
        local = MemoryCache(service.cache_max_entries, service.cache_ttl_seconds)
        shared = RedisCache(client, service.cache_ttl_seconds, prefix=prefix + "cache:")
        return TwoLevelCache(local, shared, client, channel=prefix + "invalidations")

    def limiter(settings: Settings):
        service = settings.service
        return RedisRateLimiter(
            client, service.rate_limit_per_second, service.rate_limit_burst, prefix=prefix + "rl:"
        )

    yield cache, limiter
    # The app may still be shutting down (it closes its cache itself): only clean up.
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def any_backend_service(request: pytest.FixtureRequest, make_service: ServiceFactory) -> Service:
    """The service on SQLite (in-process cache), on PostgreSQL, and with Redis."""
    if request.param == "postgresql":
        return make_service(database_url=request.getfixturevalue("postgres_store_url"))
    if request.param == "redis":
        return make_service(redis=request.getfixturevalue("redis_factories"))
    return make_service()
