"""The app as a whole: probes, metrics, request ids, problem answers, logs, OpenAPI."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter

from reco.service.logs import JsonFormatter, log_config

PROBLEM = "application/problem+json"


def test_health_probes_are_open_and_say_what_is_served(service):
    live = service.client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = service.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == service.state.holder.current.version


def test_ready_is_503_when_the_store_is_unreachable(service):
    from sqlalchemy import create_engine

    state = service.state
    real = state.engine
    state.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        ready = service.client.get("/health/ready")
    finally:
        state.engine.dispose()
        state.engine = real
    assert ready.status_code == 503
    assert ready.headers["content-type"] == PROBLEM
    assert "store is unreachable" in ready.json()["detail"]


def test_metrics_name_every_series_after_some_requests(service):
    service.get("/v1/users/1/recommendations")
    service.get("/v1/users/1/recommendations")
    service.get("/v1/users/stranger/recommendations")
    service.post("/v1/events", role="write", json={"user_id": "1", "item_id": "5"})
    service.get("/v1/items/nope/similar")
    service.client.get("/v1/models")
    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        'reco_http_request_duration_seconds_bucket{le="0.05",method="GET",'
        'route="/v1/users/{user_id}/recommendations"}',
        'reco_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",'
        'status="200"}',
        'reco_recommendations_total{kind="cold"}',
        'reco_recommendations_total{kind="cached"}',
        "reco_recommended_items_total{source=",
        'reco_scoring_batch_rows_bucket{le="1.0"} 2.0',
        'reco_cache_lookups_total{result="hit"} 1.0',
        'reco_cache_lookups_total{result="miss"} 2.0',
        "reco_events_accepted_total 1.0",
        'reco_errors_total{type="unknown-item"} 1.0',
        'reco_errors_total{type="unauthenticated"} 1.0',
        f'reco_model_info{{version="{service.state.holder.current.version}"}} 1.0',
    ):
        assert name in text, name


def _items_by_source(service) -> dict[str, float]:
    text = service.client.get("/metrics").text
    found = re.findall(r'reco_recommended_items_total\{source="([^"]*)"\} ([0-9.e+]+)', text)
    return {source: float(count) for source, count in found}


def test_a_cached_answer_counts_the_same_sources_as_the_scored_one(service):
    before = _items_by_source(service)
    first = service.get("/v1/users/7/recommendations", params={"n": 6})
    scored = _items_by_source(service)
    second = service.get("/v1/users/7/recommendations", params={"n": 6})
    again = _items_by_source(service)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    sources = Counter(item["source"] for item in second.json()["items"])
    for source, count in sources.items():
        assert scored[source] - before.get(source, 0) == count
        assert again[source] - scored[source] == count


def test_the_request_id_is_echoed_or_made(service):
    given = service.get("/v1/models", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = service.get("/v1/models", headers={"X-Request-ID": "bad id\twith junk"})
    assert (
        made.headers["X-Request-ID"] != "bad id\twith junk"
        and len(made.headers["X-Request-ID"]) == 32
    )
    problem = service.client.get("/v1/models", headers={"X-Request-ID": "req-9"})
    assert problem.json()["request_id"] == "req-9" == problem.headers["X-Request-ID"]


def test_every_error_is_a_problem_document(service):
    for response in (
        service.client.get("/no/such/route"),
        service.client.delete("/health/live"),
        service.get("/v1/items/nope/similar"),
        service.get("/v1/users/1/recommendations?n=-5"),
        service.post(
            "/v1/recommendations",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
    ):
        assert response.headers["content-type"] == PROBLEM, response.request.url
        body = response.json()
        assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
        assert body["status"] == response.status_code and body["type"].startswith(
            "urn:reco:problem:"
        )
        assert body["instance"] == response.request.url.path
        assert len(body["detail"]) > 20
    not_allowed = service.client.delete("/health/live")
    assert not_allowed.status_code == 405 and "GET" in not_allowed.headers["allow"]


def test_an_unexpected_failure_is_a_500_problem_with_the_request_id_and_a_logged_traceback(
    service, caplog
):
    class Broken:
        fingerprint = "x"

        def allowed(self, model):
            raise RuntimeError("simulated bug")

    service.state.catalog = Broken()
    with caplog.at_level(logging.ERROR, logger="reco.service.middleware"):
        response = service.get("/v1/users/1/recommendations", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "r-500" in response.json()["detail"] and response.json()["request_id"] == "r-500"
    record = next(r for r in caplog.records if r.name == "reco.service.middleware")
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "r-500" and "simulated bug" in line["traceback"]
    assert 'reco_errors_total{type="internal"} 1.0' in service.client.get("/metrics").text


def test_access_lines_are_json_with_route_status_and_timing(service, caplog):
    caplog.set_level(logging.INFO, logger="reco.service.access")
    service.get("/v1/users/1/recommendations", headers={"X-Request-ID": "line-1"})
    record = next(r for r in caplog.records if r.name == "reco.service.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["route"] == "/v1/users/{user_id}/recommendations"
    assert line["path"] == "/v1/users/1/recommendations"
    assert line["status"] == 200 and line["ms"] > 0 and line["request_id"] == "line-1"
    assert line["key_id"] == service.key_ids["read"]
    config = log_config()
    assert config["formatters"]["json"]["()"].endswith("JsonFormatter")


def test_openapi_documents_every_route_and_the_problem_schema(service):
    spec = service.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/users/{user_id}/recommendations", "get"),
        ("/v1/recommendations", "post"),
        ("/v1/items/{item_id}/similar", "get"),
        ("/v1/events", "post"),
        ("/v1/users/{user_id}", "put"),
        ("/v1/users/{user_id}", "get"),
        ("/v1/users/{user_id}", "delete"),
        ("/v1/items/{item_id}", "put"),
        ("/v1/items/{item_id}", "get"),
        ("/v1/items/{item_id}", "delete"),
        ("/v1/models", "get"),
        ("/v1/models/{version}/promote", "post"),
        ("/v1/models/rollback", "post"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    assert "ProblemDetails" in spec["components"]["schemas"]
    schemes = spec["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    assert service.client.get("/docs").status_code == 200


def test_the_served_ranker_runs_compiled(service):
    pipeline = service.state.holder.current.pipeline
    assert pipeline.ranker is not None and pipeline.ranker.compiled
