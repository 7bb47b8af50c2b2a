"""Recommendation routes end to end: known, cold and deleted users, events honoured at
once, filters, anonymous sessions, reranks and similar items; the main flows on
SQLite, PostgreSQL and with Redis."""

from __future__ import annotations

import uuid

PROBLEM = "application/problem+json"


def items_of(response) -> list[str]:
    """The recommended item ids of an answer."""
    return [item["item_id"] for item in response.json()["items"]]


def test_known_user_gets_explained_items_with_version_and_ids(any_backend_service):
    service = any_backend_service
    response = service.get("/v1/users/1/recommendations?n=7")
    assert response.status_code == 200, response.text
    body = response.json()
    version = service.state.holder.current.version
    assert body["user_id"] == "1" and body["model_version"] == version
    assert response.headers["X-Model-Version"] == version
    assert uuid.UUID(body["recommendation_id"])
    assert response.headers["X-Request-ID"]
    assert len(body["items"]) == 7
    for item in body["items"]:
        assert item["source"] and item["explanation"]
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_a_consumed_item_leaves_the_next_answer_at_once(any_backend_service):
    service = any_backend_service
    first = items_of(service.get("/v1/users/2/recommendations?n=5"))
    again = service.get("/v1/users/2/recommendations?n=5")
    assert items_of(again) == first
    consumed = first[0]
    accepted = service.post(
        "/v1/events", role="write", json={"user_id": "2", "item_id": consumed, "value": 5}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"accepted": 1, "duplicates": 0}
    after = service.get("/v1/users/2/recommendations?n=5")
    assert after.headers["X-Cache"] == "miss"
    assert consumed not in items_of(after)
    assert after.json()["recommendation_id"] != again.json()["recommendation_id"]


def test_cached_answers_get_a_fresh_recommendation_id(service):
    first = service.get("/v1/users/3/recommendations?n=4")
    second = service.get("/v1/users/3/recommendations?n=4")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert items_of(first) == items_of(second)
    assert first.json()["recommendation_id"] != second.json()["recommendation_id"]
    other_params = service.get("/v1/users/3/recommendations?n=4&device=mobile")
    assert other_params.headers["X-Cache"] == "miss"


def test_unknown_users_get_cold_answers_for_their_context(any_backend_service):
    service = any_backend_service
    plain = service.get("/v1/users/someone-new/recommendations?n=10")
    assert plain.status_code == 200
    assert {i["source"] for i in plain.json()["items"]} <= {
        "segment_popularity",
        "trending",
        "popularity",
        "fallback",
    }
    young = service.get(
        "/v1/users/someone-new/recommendations?n=10&age=19&gender=F&occupation=student"
    )
    assert young.status_code == 200
    assert items_of(young) != items_of(plain)
    assert any(
        "student" in i["explanation"] or "18-24" in i["explanation"] for i in young.json()["items"]
    )


def test_stored_attributes_of_a_new_user_shape_their_answer(service):
    plain = items_of(service.get("/v1/users/fresh-user/recommendations?n=10"))
    stored = service.put(
        "/v1/users/fresh-user", json={"attributes": {"age": 19, "occupation": "student"}}
    )
    assert stored.status_code == 200, stored.text
    after = items_of(service.get("/v1/users/fresh-user/recommendations?n=10"))
    assert after != plain


def test_a_deleted_user_is_served_as_a_new_user(service):
    known = service.get("/v1/users/4/recommendations?n=10&explain=false").json()["items"]
    assert "explanation" not in known[0]
    assert service.delete("/v1/users/4").status_code == 204
    after = service.get("/v1/users/4/recommendations?n=10").json()["items"]
    cold_sources = {"segment_popularity", "trending", "popularity", "fallback"}
    assert {i["source"] for i in after} <= cold_sources
    assert [i["item_id"] for i in after] != [i["item_id"] for i in known]


def test_filters_from_repeated_and_comma_separated_parameters(service):
    drama = service.get("/v1/users/5/recommendations?n=10&category=Drama").json()["items"]
    both = service.get("/v1/users/5/recommendations?n=10&category=Drama,Comedy")
    repeated = service.get("/v1/users/5/recommendations?n=10&category=Drama&category=Comedy")
    assert items_of(both) == items_of(repeated)
    catalog = service.state.holder.current.pipeline.catalog
    items = service.state.holder.current.pipeline.items
    dramas = set(items.ids[catalog.category_mask(["Drama"])].tolist())
    assert {i["item_id"] for i in drama} <= dramas
    no_drama = items_of(service.get("/v1/users/5/recommendations?n=10&exclude_category=Drama"))
    assert not set(no_drama) & dramas
    excluded = items_of(service.get("/v1/users/5/recommendations?n=5"))[:2]
    answer = service.get(
        f"/v1/users/5/recommendations?n=5&exclude={excluded[0]}&exclude={excluded[1]}"
    )
    assert not set(items_of(answer)) & set(excluded)


def test_an_unknown_category_is_a_422_naming_the_known_ones(service):
    response = service.get("/v1/users/5/recommendations?category=Nope")
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "Nope" in response.json()["detail"] and "Drama" in response.json()["detail"]


def test_n_must_be_within_limits(service):
    assert service.get("/v1/users/1/recommendations?n=0").status_code == 422
    too_many = service.get("/v1/users/1/recommendations?n=100000")
    assert too_many.status_code == 422
    assert "at most 500" in too_many.json()["detail"]
    not_a_number = service.get("/v1/users/1/recommendations?n=ten")
    assert not_a_number.status_code == 422
    assert not_a_number.json()["errors"][0]["field"] == "query.n"


def test_a_bad_age_in_the_context_is_a_422(service):
    response = service.get("/v1/users/nobody/recommendations?age=old")
    assert response.status_code == 422
    assert "age" in response.json()["detail"]


def test_an_anonymous_session_is_served_from_its_history(any_backend_service):
    service = any_backend_service
    cold = service.post("/v1/recommendations", json={"n": 10})
    assert cold.status_code == 200, cold.text
    assert cold.json()["user_id"] is None
    history = ["50", "172", "181"]  # the Star Wars films
    session = service.post(
        "/v1/recommendations",
        json={
            "history": [*history[:2], {"item_id": history[2], "timestamp": 893_000_000}],
            "context": {"device": "mobile"},
            "n": 10,
        },
    )
    assert session.status_code == 200, session.text
    body = session.json()
    assert body["unknown_history"] == []
    assert not set(items_of(session)) & set(history)
    assert items_of(session) != items_of(cold)
    assert session.headers["X-Model-Version"] == body["model_version"]


def test_unknown_history_items_are_reported_not_fatal(service):
    response = service.post("/v1/recommendations", json={"history": ["50", "no-such-film"]})
    assert response.status_code == 200
    assert response.json()["unknown_history"] == ["no-such-film"]


def test_a_rerank_returns_only_the_known_candidates(any_backend_service):
    service = any_backend_service
    candidates = ["1", "2", "3", "4", "5", "not-an-item", "98"]
    response = service.post(
        "/v1/recommendations", json={"user_id": "7", "candidates": candidates, "explain": False}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown_candidates"] == ["not-an-item"]
    assert body["user_id"] == "7"
    assert set(items_of(response)) <= set(candidates) - {"not-an-item"}
    pipeline = service.state.holder.current.pipeline
    seen = set(pipeline.histories_for(["7"]).matrix.indices)
    known = [c for c in candidates if c != "not-an-item"]
    unseen = [c for c in known if pipeline.items.index_of(c) not in seen]
    assert sorted(items_of(response)) == sorted(unseen)


def test_a_rerank_of_only_unknown_candidates_is_empty(service):
    response = service.post("/v1/recommendations", json={"candidates": ["x", "y"]})
    assert response.status_code == 200
    assert response.json()["items"] == [] and response.json()["unknown_candidates"] == ["x", "y"]


def test_a_rerank_has_a_size_limit(make_service):
    service = make_service(max_candidates=3)
    response = service.post("/v1/recommendations", json={"candidates": ["1", "2", "3", "4"]})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_session_bodies_are_validated_field_by_field(service):
    response = service.post(
        "/v1/recommendations", json={"n": -1, "history": [{"timestamp": 1}], "bogus": 1}
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.n", "body.bogus"} <= fields
    assert any(f.startswith("body.history.0") for f in fields)


def test_similar_items_and_a_404_for_unknown_ones(any_backend_service):
    service = any_backend_service
    response = service.get("/v1/items/50/similar?n=5")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["item_id"] == "50" and len(body["items"]) == 5
    assert "50" not in items_of(response)
    assert all(i["explanation"] for i in body["items"])
    missing = service.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert "no-such-item" in missing.json()["detail"]
    assert missing.json()["type"] == "urn:reco:problem:unknown-item"
