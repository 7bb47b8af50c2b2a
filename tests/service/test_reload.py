"""Hot reload inside one worker: the watcher follows the registry's `current` pointer,
requests in flight keep the model they took, a version that cannot load is skipped,
and a service started before any training picks up the first model by itself."""

from __future__ import annotations

import logging
import shutil
import threading
import time

from fastapi.testclient import TestClient

from reco.config import ServiceConfig, Settings
from reco.registry import ModelRegistry
from reco.service.app import create_app

from .conftest import TEST_SERVICE, add_keys


def wait_for(condition, seconds: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_version_promoted_elsewhere_is_served_within_the_check_interval(service, trained_home):
    other = trained_home.versions[1]
    ModelRegistry(service.settings.models_dir).promote(other)  # as `reco models promote` does
    assert wait_for(lambda: service.state.holder.current.version == other)
    assert service.get("/v1/users/1/recommendations").headers["X-Model-Version"] == other


def test_requests_in_flight_keep_their_model_while_versions_swap(service, trained_home):
    versions = set(trained_home.versions)
    registry = ModelRegistry(service.settings.models_dir)
    failures: list[object] = []
    seen: set[str] = set()
    stop = threading.Event()

    def client(user: str) -> None:
        while not stop.is_set():
            response = service.get(f"/v1/users/{user}/recommendations?n=5&device=d{time.time()}")
            if response.status_code != 200 or len(response.json()["items"]) != 5:
                failures.append((response.status_code, response.text[:200]))
            seen.add(response.headers.get("X-Model-Version", "?"))

    threads = [threading.Thread(target=client, args=(str(u),)) for u in (1, 2, "new")]
    for thread in threads:
        thread.start()
    try:
        for version in [trained_home.versions[1], trained_home.versions[0]] * 2:
            registry.promote(version)
            assert wait_for(lambda v=version: service.state.holder.current.version == v)
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert seen == versions


def test_a_version_that_cannot_load_is_skipped_and_the_old_one_served(
    service, trained_home, caplog
):
    current, other = trained_home.versions
    registry = ModelRegistry(service.settings.models_dir)
    pipeline_file = registry.root / other / "pipeline" / "pipeline.json"
    pipeline_file.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="reco.service.model_holder"):
        # Point `current` at it behind the registry's back (its checks would refuse).
        (registry.root / "current").unlink()
        (registry.root / "current").symlink_to(other)
        assert wait_for(lambda: service.state.holder.last_error is not None)
    assert service.state.holder.current.version == current
    assert other in service.state.holder.last_error
    assert any(other in r.getMessage() for r in caplog.records)
    response = service.get("/v1/users/1/recommendations")
    assert response.status_code == 200 and response.headers["X-Model-Version"] == current


def test_the_service_starts_without_a_model_and_loads_the_first_one(tmp_path, trained_home):
    settings = Settings(home=tmp_path / "home", service=ServiceConfig(**TEST_SERVICE))
    keys, _ = add_keys(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert "no model" in ready.json()["detail"] and "reco train" in ready.json()["detail"]
        headers = {"X-API-Key": keys["read"]}
        answer = client.get("/v1/users/1/recommendations", headers=headers)
        assert answer.status_code == 503 and "reco train" in answer.json()["detail"]
        assert int(answer.headers["Retry-After"]) >= 1
        # Training publishes a version and promotes it; the watcher picks it up.
        version = trained_home.versions[0]
        shutil.copytree(trained_home.path / "models" / version, settings.models_dir / version)
        ModelRegistry(settings.models_dir).promote(version)
        assert wait_for(lambda: client.get("/health/ready").status_code == 200)
        answer = client.get("/v1/users/1/recommendations", headers=headers)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == version


def test_the_served_model_is_kept_out_of_full_garbage_collections(service, trained_home):
    import gc

    model = service.state.holder.current
    assert gc.get_freeze_count() > 0
    # What the service serves from is frozen: a full collection does not walk it.
    assert all(tracked is not model for tracked in gc.get_objects(generation=2))
