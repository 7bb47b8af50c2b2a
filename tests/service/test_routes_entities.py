"""Users and items through the API: PUT, GET, DELETE; availability honoured at once
in every answer, cached ones included."""

from __future__ import annotations

import time

PROBLEM = "application/problem+json"


def items_of(response) -> list[str]:
    """The recommended item ids of an answer."""
    return [item["item_id"] for item in response.json()["items"]]


def test_users_are_created_read_replaced_and_deleted(any_backend_service):
    service = any_backend_service
    created = service.put("/v1/users/u-100", json={"attributes": {"country": "FR", "age": 31}})
    assert created.status_code == 200, created.text
    assert created.json()["attributes"] == {"country": "FR", "age": 31}
    got = service.get("/v1/users/u-100")
    assert got.status_code == 200 and got.json()["user_id"] == "u-100"
    replaced = service.put("/v1/users/u-100", json={"attributes": {"device": "tv"}})
    assert replaced.json()["attributes"] == {"device": "tv"}
    assert service.delete("/v1/users/u-100").status_code == 204
    gone = service.get("/v1/users/u-100")
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
    assert service.delete("/v1/users/u-100").status_code == 404


def test_bad_user_attributes_are_a_422_listing_each_problem(service):
    response = service.put(
        "/v1/users/u-1", json={"attributes": {"nested": {"a": 1}, "list": [1, 2]}}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert len(response.json()["errors"]) == 2
    unknown_field = service.put("/v1/users/u-1", json={"attributes": {}, "name": "x"})
    assert unknown_field.status_code == 422


def test_items_are_created_read_and_deleted(any_backend_service):
    service = any_backend_service
    created = service.put(
        "/v1/items/new-film",
        json={"title": "New Film", "categories": ["Drama", "Comedy"], "attributes": {"year": 2024}},
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["categories"] == ["Drama", "Comedy"] and body["available"] is True
    assert service.get("/v1/items/new-film").json()["title"] == "New Film"
    assert service.delete("/v1/items/new-film").status_code == 204
    assert service.get("/v1/items/new-film").status_code == 404
    assert service.delete("/v1/items/new-film").status_code == 404
    assert service.get("/v1/items/never-stored").status_code == 404


def test_an_unavailable_item_is_never_recommended_even_from_the_cache(any_backend_service):
    service = any_backend_service
    before = service.get("/v1/users/8/recommendations?n=5")
    again = service.get("/v1/users/8/recommendations?n=5")
    assert again.headers["X-Cache"] == "hit"
    gone = items_of(before)[0]
    marked = service.put("/v1/items/" + gone, json={"title": "Out of stock", "available": False})
    assert marked.status_code == 200 and marked.json()["available"] is False
    after = service.get("/v1/users/8/recommendations?n=5")
    assert gone not in items_of(after) and len(items_of(after)) == 5
    # Nor for anyone else, on any route.
    cold = service.get("/v1/users/nobody/recommendations?n=50")
    assert gone not in items_of(cold)
    session = service.post("/v1/recommendations", json={"history": ["50"], "n": 50})
    assert gone not in items_of(session)
    rerank = service.post("/v1/recommendations", json={"candidates": [gone, "1", "2"]})
    assert gone not in items_of(rerank)
    # Back on sale: it may be recommended again.
    service.put("/v1/items/" + gone, json={"title": "Back", "available": True})
    assert gone in items_of(service.get("/v1/users/8/recommendations?n=5"))


def test_a_deleted_item_is_never_recommended_nor_shown_as_similar(service):
    similar = items_of(service.get("/v1/items/50/similar?n=3"))
    gone = similar[0]
    assert service.delete(f"/v1/items/{gone}").status_code == 204
    after = items_of(service.get("/v1/items/50/similar?n=3"))
    assert gone not in after and len(after) == 3
    for user in ("1", "9", "nobody"):
        answer = service.get(f"/v1/users/{user}/recommendations?n=100")
        assert gone not in items_of(answer)


def test_another_workers_writes_arrive_with_the_catalogue_refresh(make_service):
    from reco.store.entities import put_item

    service = make_service(catalog_refresh_seconds=0.1)
    gone = items_of(service.get("/v1/users/10/recommendations?n=3"))[0]
    # Written straight to the store, as another worker or process would.
    put_item(service.state.engine, gone, title="elsewhere", available=False)
    deadline = time.monotonic() + 5
    while gone not in service.state.catalog.unavailable and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone not in items_of(service.get("/v1/users/10/recommendations?n=3"))
