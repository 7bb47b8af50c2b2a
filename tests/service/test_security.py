"""Security and limits: keys and roles, revocation, rate limits, body and batch sizes,
hostile ids, CORS, and no secret in any log line."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse

from reco.service.key_memo import KEY_MEMO_SECONDS
from reco.service.keys import revoke_key
from reco.service.logs import JsonFormatter

PROBLEM = "application/problem+json"


def test_no_key_is_a_401_with_a_challenge(service):
    for method, url in [
        ("GET", "/v1/users/1/recommendations"),
        ("POST", "/v1/recommendations"),
        ("GET", "/v1/items/50/similar"),
        ("POST", "/v1/events"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models/rollback"),
        ("PUT", "/v1/items/1"),
        ("DELETE", "/v1/users/1"),
    ]:
        response = service.client.request(method, url, json={})
        assert response.status_code == 401, (method, url)
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "reco keys create" in response.json()["detail"]


def test_unknown_and_malformed_keys_are_401(service):
    for secret in ["nope", "reco_abc_def", service.keys["read"] + "x", "x" * 10_000]:
        response = service.client.get(
            "/v1/users/1/recommendations", headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status_code == 401
    basic = service.client.get(
        "/v1/users/1/recommendations", headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert basic.status_code == 401


def test_the_x_api_key_header_works_too(service):
    response = service.client.get(
        "/v1/users/1/recommendations", headers={"X-API-Key": service.keys["read"]}
    )
    assert response.status_code == 200


def test_the_bearer_scheme_is_case_insensitive_and_another_scheme_falls_back_to_x_api_key(
    service,
):
    secret = service.keys["read"]
    url = "/v1/users/1/recommendations"
    assert service.client.get(url, headers={"Authorization": f"bearer {secret}"}).status_code == 200
    both = {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": secret}
    assert service.client.get(url, headers=both).status_code == 200
    assert service.client.get(url, headers={"Authorization": "Bearer "}).status_code == 401


def test_the_schema_asks_for_a_key_exactly_where_the_routes_do(service):
    paths = service.client.get("/openapi.json").json()["paths"]
    either = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    assert paths["/v1/users/{user_id}/recommendations"]["get"]["security"] == either
    assert paths["/v1/models/rollback"]["post"]["security"] == either
    assert paths["/v1/events"]["post"]["security"] == either
    for open_path in ("/health/live", "/health/ready", "/metrics"):
        assert "security" not in paths[open_path]["get"], open_path


def test_a_role_below_the_endpoints_is_a_403(service):
    event = {"user_id": "1", "item_id": "2"}
    assert service.post("/v1/events", role="read", json=event).status_code == 403
    assert service.put("/v1/items/1", role="read", json={}).status_code == 403
    assert service.delete("/v1/users/1", role="read").status_code == 403
    forbidden = service.post("/v1/models/rollback", role="write")
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == PROBLEM
    assert "needs admin" in forbidden.json()["detail"]
    # Higher roles include the lower ones.
    assert service.get("/v1/users/1/recommendations", role="admin").status_code == 200
    assert service.post("/v1/events", role="admin", json=event).status_code == 202


def test_a_revoked_key_is_a_401_within_a_second(service):
    assert service.get("/v1/models").status_code == 200
    assert revoke_key(service.state.engine, service.key_ids["read"])
    revoked = time.monotonic()
    while (response := service.get("/v1/models")).status_code == 200:
        assert time.monotonic() - revoked < KEY_MEMO_SECONDS + 0.5
        time.sleep(0.05)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    time.sleep(KEY_MEMO_SECONDS)
    assert service.get("/v1/models").status_code == 401  # and stays refused


def test_a_new_key_works_at_once(service):
    from reco.service.keys import create_key

    _, secret = create_key(service.state.engine, "late", "read")
    response = service.client.get("/v1/models", headers={"X-API-Key": secret})
    assert response.status_code == 200


def test_guessing_keys_is_rate_limited_per_client(make_service):
    service = make_service(rate_limit_per_second=0.5, rate_limit_burst=3)
    wrong = {"X-API-Key": "reco_0123456789abcdef_" + "x" * 43}
    codes = [service.client.get("/v1/models", headers=wrong).status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]


def test_over_the_rate_limit_is_a_429_with_retry_after(make_service):
    service = make_service(rate_limit_per_second=0.5, rate_limit_burst=3)
    codes = [service.get("/v1/models").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    limited = service.get("/v1/models")
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM
    retry = limited.headers["Retry-After"]
    assert retry.isdigit() and int(retry) >= 1
    # Limits are per key: another key still passes.
    assert service.get("/v1/models", role="admin").status_code == 200
    # Health and metrics are never limited.
    assert all(service.client.get("/health/live").status_code == 200 for _ in range(5))


def test_with_auth_disabled_limits_apply_per_client(make_service):
    service = make_service(auth_enabled=False, rate_limit_per_second=0.5, rate_limit_burst=2)
    codes = [service.client.get("/v1/models").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_an_oversized_body_is_a_413_whether_declared_or_streamed(make_service):
    service = make_service(max_body_bytes=2048)
    big = json.dumps({"history": ["1"] * 1000}).encode()
    json_type = {"Content-Type": "application/json"}
    declared = service.post("/v1/recommendations", content=big, headers=json_type)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == PROBLEM
    assert "2,048 bytes" in declared.json()["detail"]

    def chunks():
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    streamed = service.client.post(
        "/v1/events",
        content=chunks(),
        headers={**service.headers("write"), **json_type},
    )
    assert streamed.status_code == 413
    small = service.post("/v1/recommendations", json={"history": ["1"]})
    assert small.status_code == 200


HOSTILE_IDS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "1' OR '1'='1",
    "1; DROP TABLE interactions; --",
    "Robert'); DROP TABLE users;--",
    "💥 ünïcødé 日本語",
    "\u202eevil",
    "a" * 512,
    "%00",
    "null",
    "<script>alert(1)</script>",
]


def test_hostile_ids_get_clean_answers(any_backend_service):
    service = any_backend_service
    for hostile in HOSTILE_IDS:
        quoted = urllib.parse.quote(hostile, safe="")
        answers = [
            service.get(f"/v1/users/{quoted}/recommendations"),
            service.get(f"/v1/items/{quoted}/similar"),
            service.get(f"/v1/users/{quoted}"),
            service.get(f"/v1/items/{quoted}"),
            service.delete(f"/v1/users/{quoted}"),
            service.post(f"/v1/models/{quoted}/promote", role="admin"),
            service.get(f"/v1/users/1/recommendations?exclude={quoted}&{quoted}={quoted}"),
            service.post(
                "/v1/recommendations", json={"history": [hostile], "candidates": [hostile]}
            ),
            service.post("/v1/events", role="write", json={"user_id": hostile, "item_id": hostile}),
            service.put(f"/v1/users/{quoted}", json={"attributes": {"name": hostile}}),
        ]
        for response in answers:
            assert response.status_code < 500, (response.request.url, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"] == PROBLEM
    # The store survived: users and interactions are all still there.
    assert service.get("/v1/users/1").status_code == 200
    assert service.get("/v1/users/1/recommendations").status_code == 200


def test_ids_beyond_512_characters_or_with_control_characters_are_422(service):
    for bad in ["x" * 513, "x" * 10_000, "a\x00b", "tab\there"]:
        quoted = urllib.parse.quote(bad, safe="")
        for response in (
            service.get(f"/v1/users/{quoted}/recommendations"),
            service.get(f"/v1/items/{quoted}"),
            service.put(f"/v1/users/{quoted}", json={}),
            service.post("/v1/events", role="write", json={"user_id": bad, "item_id": "1"}),
        ):
            assert response.status_code == 422, (bad[:20], response.request.url, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"]


def test_nul_characters_in_stored_text_are_refused_not_crashed(any_backend_service):
    service = any_backend_service
    for body in (
        {"title": "a\x00b"},
        {"attributes": {"k": "v\x00"}},
        {"categories": ["x\x00"]},
    ):
        response = service.put("/v1/items/nul-item", json=body)
        assert response.status_code == 422, (body, response.text)


def test_cors_answers_only_configured_origins(make_service):
    service = make_service(cors_origins=["https://shop.example"])
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    allowed = service.client.options(
        "/v1/users/1/recommendations", headers={"Origin": "https://shop.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    other = service.client.options(
        "/v1/users/1/recommendations", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    no_cors = make_service().client.options(
        "/v1/users/1/recommendations", headers={"Origin": "https://shop.example", **preflight}
    )
    assert "access-control-allow-origin" not in no_cors.headers


def test_no_secret_ever_reaches_a_log_line(service, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = list(service.keys.values())
    for role, secret in service.keys.items():
        service.client.get("/v1/users/1/recommendations", headers={"X-API-Key": secret})
        service.client.get("/v1/models", headers={"Authorization": f"Bearer {secret}x"})
        service.client.post(
            "/v1/events", headers={"X-API-Key": secret}, json={"user_id": "1", "item_id": role}
        )
    service.client.get(f"/v1/users/{secrets[0]}/recommendations?token={secrets[1]}")
    formatter = JsonFormatter()
    # The service's own lines (the test client logs its URLs on its own account).
    lines = [formatter.format(r) for r in caplog.records if r.name.startswith(("reco", "uvicorn"))]
    access = [json.loads(line) for line in lines if '"logger": "reco.service.access"' in line]
    assert len(access) >= 10
    assert {"method", "route", "status", "ms", "request_id", "key_id"} <= set(access[0])
    assert access[0]["key_id"] == service.key_ids["read"]
    for line in lines:
        for secret in secrets:
            assert secret not in line
            assert secret.split("_", 2)[2] not in line  # the random part alone
