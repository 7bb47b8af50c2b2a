"""POST /v1/events: one or many, validated whole, stored durably, deduplicated."""

from __future__ import annotations

PROBLEM = "application/problem+json"


def test_a_batch_is_stored_and_counted(any_backend_service):
    from reco.store.events import events_since

    service = any_backend_service
    batch = [
        {"user_id": "42", "item_id": "1", "event_type": "view", "timestamp": 1_700_000_000},
        {"user_id": "42", "item_id": "2", "timestamp": "2024-01-01T10:00:00Z", "value": 4.5},
        {"user_id": "new-user", "item_id": "3", "event_id": "evt-1"},
    ]
    response = service.post("/v1/events", role="write", json=batch)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3, "duplicates": 0}
    watermark = service.state.holder.current.watermark
    stored = events_since(service.state.engine, ["42", "new-user"], watermark)
    assert stored["item_id"].tolist() == ["1", "2", "3"]
    again = service.post("/v1/events", role="write", json=batch[2])
    assert again.json() == {"accepted": 0, "duplicates": 1}


def test_a_new_users_events_make_them_warm(service):
    cold = service.get("/v1/users/brand-new/recommendations?n=5").json()["items"]
    films = ["50", "172", "181", "174", "127", "98", "100", "56", "64", "12",
             "1", "7", "9", "22", "28", "69", "79", "82", "89", "96"]  # fmt: skip
    events = [{"user_id": "brand-new", "item_id": f} for f in films]
    assert service.post("/v1/events", role="write", json=events).status_code == 202
    warm = service.get("/v1/users/brand-new/recommendations?n=5").json()["items"]
    assert [i["item_id"] for i in warm] != [i["item_id"] for i in cold]
    assert not {i["item_id"] for i in warm} & set(films)


def test_a_bad_event_rejects_the_whole_batch_listing_each_problem(service):
    from reco.store.repository import counts

    before = counts(service.state.engine)["interactions"]
    batch = [
        {"user_id": "1", "item_id": "2"},
        {"user_id": "1", "item_id": "3", "timestamp": "not a time"},
        {"user_id": "", "item_id": "4"},
        {"user_id": "1"},
    ]
    response = service.post("/v1/events", role="write", json=batch)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.list[EventIn].2.user_id", "body.list[EventIn].3.item_id"} <= fields
    bad_time = service.post("/v1/events", role="write", json=batch[:2])
    assert bad_time.status_code == 422
    assert "event 1" in bad_time.json()["detail"] and "timestamp" in bad_time.json()["detail"]
    assert counts(service.state.engine)["interactions"] == before


def test_too_many_events_in_one_request_is_a_413(make_service):
    service = make_service(max_batch_events=3)
    batch = [{"user_id": "1", "item_id": str(i)} for i in range(4)]
    response = service.post("/v1/events", role="write", json=batch)
    assert response.status_code == 413
    assert "split the batch" in response.json()["detail"]
    assert service.post("/v1/events", role="write", json=batch[:3]).status_code == 202


def test_an_empty_batch_is_accepted_and_stores_nothing(service):
    response = service.post("/v1/events", role="write", json=[])
    assert response.status_code == 202 and response.json() == {"accepted": 0, "duplicates": 0}


def test_an_unreachable_store_is_a_503_with_retry_after(make_service):
    from sqlalchemy import create_engine

    service = make_service(auth_enabled=False)  # the write itself meets the dead store
    state = service.state
    real = state.engine
    # A store that refuses connections, as a PostgreSQL server that went down would.
    state.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        response = service.client.post("/v1/events", json={"user_id": "1", "item_id": "2"})
    finally:
        state.engine.dispose()
        state.engine = real
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["Retry-After"]) >= 1
    assert "store" in response.json()["detail"]


def test_an_answer_computed_while_an_event_arrives_is_not_cached(service, monkeypatch):
    from reco.service import recommending
    from reco.store.events import watermark

    real = recommending.user_history

    def history_then_event(state, model, user_id):
        found = real(state, model, user_id)
        # The event lands while this answer is still being computed.
        assert (
            service.post(
                "/v1/events", role="write", json={"user_id": user_id, "item_id": "1"}
            ).status_code
            == 202
        )
        return found

    monkeypatch.setattr(recommending, "user_history", history_then_event)
    first = service.get("/v1/users/11/recommendations?n=5")
    monkeypatch.setattr(recommending, "user_history", real)
    # The event path drops the user's answers again once it applied the event; that
    # must not race the answers below.
    assert service.state.events.wait_processed(watermark(service.state.engine), timeout=30)
    second = service.get("/v1/users/11/recommendations?n=5")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "miss")
    assert service.get("/v1/users/11/recommendations?n=5").headers["X-Cache"] == "hit"
