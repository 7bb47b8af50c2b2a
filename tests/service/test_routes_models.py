"""Model versions through the API: list, promote, roll back (admin only)."""

from __future__ import annotations

import json

from reco.registry import ModelRegistry

PROBLEM = "application/problem+json"


def test_versions_are_listed_with_metrics_and_the_current_one(service, trained_home):
    current, other = trained_home.versions
    response = service.get("/v1/models")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"] == current and body["serving"] == current
    listed = {v["version"]: v for v in body["versions"]}
    assert set(listed) == {current, other}
    assert listed[current]["current"] and listed[current]["serving"]
    assert not listed[other]["current"]
    selected = listed[current]["selected_model"]
    assert listed[current]["metrics"]["validation"][selected]["ndcg@10"] > 0


def test_promote_serves_the_new_version_at_once_and_rollback_returns(
    any_backend_service, trained_home
):
    service = any_backend_service
    current, other = trained_home.versions
    promoted = service.post(f"/v1/models/{other}/promote", role="admin")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"current": other, "previous": current, "serving": other}
    answer = service.get("/v1/users/1/recommendations")
    assert answer.headers["X-Model-Version"] == other == answer.json()["model_version"]
    assert ModelRegistry(service.settings.models_dir).current_version() == other
    rolled = service.post("/v1/models/rollback", role="admin")
    assert rolled.status_code == 200
    assert rolled.json() == {"current": current, "previous": other, "serving": current}
    assert service.get("/v1/users/1/recommendations").headers["X-Model-Version"] == current


def test_promotion_is_mirrored_in_the_store(service, trained_home):
    from reco.store.repository import current_model_version

    _, other = trained_home.versions
    assert service.post(f"/v1/models/{other}/promote", role="admin").status_code == 200
    assert current_model_version(service.state.engine) == other


def test_promote_and_rollback_need_the_admin_role(service, trained_home):
    _, other = trained_home.versions
    for role in ("read", "write"):
        response = service.post(f"/v1/models/{other}/promote", role=role)
        assert response.status_code == 403
        assert "admin" in response.json()["detail"]
        assert service.post("/v1/models/rollback", role=role).status_code == 403


def test_an_unknown_version_is_a_404(service):
    for version in ("nope", "..", "../../etc", "current"):
        response = service.post(f"/v1/models/{version}/promote", role="admin")
        assert response.status_code in (404, 405), (version, response.status_code)
        assert response.headers["content-type"] == PROBLEM


def test_a_damaged_version_is_refused_and_the_served_one_kept(service, trained_home):
    current, other = trained_home.versions
    registry = ModelRegistry(service.settings.models_dir)
    manifest = registry.root / other / "manifest.json"
    data = json.loads(manifest.read_text())
    first = next(iter(data["files"]))
    (registry.root / other / first).write_bytes(b"tampered")
    response = service.post(f"/v1/models/{other}/promote", role="admin")
    assert response.status_code == 409
    assert "corrupted" in response.json()["detail"]
    assert registry.current_version() == current
    assert service.get("/v1/users/1/recommendations").headers["X-Model-Version"] == current


def test_rollback_without_an_earlier_version_is_a_409(service):
    response = service.post("/v1/models/rollback", role="admin")
    assert response.status_code == 409
    assert "earlier" in response.json()["detail"]
