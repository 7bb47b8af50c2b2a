"""Items PUT after training are served before any retraining: by content (close to a
user's history), by trending (their events), in a share of each answer, with every
filter honoured, in similar items, on SQLite and PostgreSQL, and the cache follows.

The model is the slice of ml-100k trained once by tests/service/conftest.py: its
content source is TF-IDF over each film's title and genres.
"""

from __future__ import annotations

import threading
import time

import pytest

from reco.service.new_item_answers import NEW_ITEM_SOURCE
from reco.service.new_items import NewItems
from reco.store.events import watermark

WAIT = 10.0
USER = "1"
# Close to user 1's history (many action/sci-fi films): Star Wars words and genres.
RELATED = {
    "title": "Star Wars: Return of the Empire (2025)",
    "text": "A new Star Wars film: Jedi and the Empire strike back. Genres: Action, "
    "Adventure, Sci-Fi, War.",
    "categories": ["Action", "Adventure", "Sci-Fi", "War"],
}
# Shares nothing with any film: no word and no genre the model knows.
UNRELATED = {"title": "Zzyzx Qwertyuiop", "text": "Vexillology xylography.", "categories": []}


def answer(service, user: str = USER, **params) -> list[dict]:
    """The items of a user's answer (asserting a 200)."""
    query = "&".join(f"{k}={v}" for k, v in {"n": 10, **params}.items())
    response = service.get(f"/v1/users/{user}/recommendations?{query}")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ids(items: list[dict]) -> list[str]:
    """The item ids of answer items."""
    return [item["item_id"] for item in items]


def put(service, item_id: str, **fields) -> None:
    """PUT an item (asserting a 200)."""
    response = service.put(f"/v1/items/{item_id}", json=fields)
    assert response.status_code == 200, response.text


def send(service, events: list[dict]) -> None:
    """POST events and wait until the event path applied them."""
    response = service.post("/v1/events", role="write", json=events)
    assert response.status_code == 202, response.text
    last = watermark(service.state.engine)
    assert service.state.events.wait_processed(last, timeout=WAIT)


def eventually(check, timeout: float = WAIT):
    """Call ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- content --------------------------------------------------------------------------


def test_a_new_item_close_to_a_users_history_enters_their_answer(any_backend_service):
    service = any_backend_service
    before = answer(service)
    assert all(item["source"] != NEW_ITEM_SOURCE for item in before)
    put(service, "new-unrelated", **UNRELATED)
    put(service, "new-star-wars", **RELATED)
    after = answer(service)
    assert len(after) == 10
    new = [item for item in after if item["source"] == NEW_ITEM_SOURCE]
    # One slot of ten (the default share), below the top three, to the closest new item.
    assert ids(new) == ["new-star-wars"]
    assert ids(after).index("new-star-wars") == 3
    assert ids(after)[:3] == ids(before)[:3]
    history_titles = set(service.state.holder.current.pipeline.catalog.titles)
    reason = new[0]["explanation"]
    assert reason.startswith("new: similar to ") and reason[len("new: similar to ") :] in (
        history_titles
    )
    scores = [item["score"] for item in after]
    assert scores == sorted(scores, reverse=True)
    metrics = service.client.get("/metrics").text
    assert 'reco_recommended_items_total{source="new_item"}' in metrics


def test_a_session_gets_new_items_but_a_rerank_only_its_candidates(service):
    put(service, "new-star-wars", **RELATED)
    session = service.post("/v1/recommendations", json={"history": ["50", "172", "181"]})
    assert session.status_code == 200, session.text
    assert "new-star-wars" in ids(session.json()["items"])
    # A session that already consumed it is not offered it again.
    consumed = service.post(
        "/v1/recommendations", json={"history": ["50", "172", "181", "new-star-wars"]}
    )
    assert consumed.status_code == 200, consumed.text
    assert "new-star-wars" not in ids(consumed.json()["items"])
    assert consumed.json()["unknown_history"] == ["new-star-wars"]
    rerank = service.post(
        "/v1/recommendations",
        json={"history": ["50"], "candidates": ["1", "2", "3", "4", "5", "new-star-wars"]},
    )
    assert rerank.status_code == 200, rerank.text
    assert "new-star-wars" not in ids(rerank.json()["items"])
    assert rerank.json()["unknown_candidates"] == ["new-star-wars"]


def test_with_no_share_answers_hold_no_new_item(make_service):
    service = make_service(new_items_share=0.0)
    before = answer(service)
    put(service, "new-star-wars", **RELATED)
    assert answer(service) == before
    similar = service.get("/v1/items/new-star-wars/similar")
    assert similar.status_code == 200 and similar.json()["items"]


# -- similar items --------------------------------------------------------------------


def test_similar_items_of_a_new_item_and_of_a_related_known_one(any_backend_service):
    service = any_backend_service
    put(service, "new-star-wars", **RELATED)
    put(service, "new-star-wars-2", **{**RELATED, "title": "Star Wars: Empire Rising (2026)"})
    own = service.get("/v1/items/new-star-wars/similar?n=10")
    assert own.status_code == 200, own.text
    found = own.json()["items"]
    assert len(found) == 10 and "new-star-wars" not in ids(found)
    assert found[0]["item_id"] == "new-star-wars-2" and found[0]["source"] == NEW_ITEM_SOURCE
    known = [item for item in found if item["source"] == "content"]
    titles = service.state.holder.current.pipeline.catalog.titles
    index = service.state.holder.current.pipeline.items
    assert any("Star Wars" in titles[index.index_of(item["item_id"])] for item in known)
    assert all(item["explanation"].startswith("similar in content to Star Wars") for item in found)
    # Star Wars (1977) is item 50 of ml-100k: its similar items now hold a new one.
    related = service.get("/v1/items/50/similar?n=10")
    assert related.status_code == 200
    assert {"new-star-wars", "new-star-wars-2"} & set(ids(related.json()["items"]))


def test_similar_items_404_only_for_ids_the_store_does_not_have(service):
    missing = service.get("/v1/items/never-stored/similar")
    assert missing.status_code == 404
    assert "the store does not have it" in missing.json()["detail"]
    put(service, "new-hidden", available=False, **RELATED)
    hidden = service.get("/v1/items/new-hidden/similar?n=5")
    assert hidden.status_code == 200 and len(hidden.json()["items"]) == 5
    put(service, "new-blank")
    assert service.get("/v1/items/new-blank/similar").json()["items"] == []
    assert service.delete("/v1/items/new-hidden").status_code == 204
    assert service.get("/v1/items/new-hidden/similar").status_code == 404


# -- filters --------------------------------------------------------------------------


def test_filters_hold_for_new_items(any_backend_service):
    service = any_backend_service
    put(service, "new-star-wars", **RELATED)
    assert "new-star-wars" in ids(answer(service))
    assert "new-star-wars" not in ids(answer(service, exclude_category="Sci-Fi"))
    assert "new-star-wars" not in ids(answer(service, category="Comedy"))
    assert "new-star-wars" in ids(answer(service, category="War"))
    assert "new-star-wars" not in ids(answer(service, exclude="new-star-wars"))
    # Made unavailable, then deleted: gone from answers and from similar items.
    put(service, "new-star-wars", available=False, **RELATED)
    assert "new-star-wars" not in ids(answer(service))
    assert "new-star-wars" not in ids(service.get("/v1/items/50/similar").json()["items"])
    put(service, "new-star-wars", **RELATED)
    assert "new-star-wars" in ids(answer(service))
    assert service.delete("/v1/items/new-star-wars").status_code == 204
    assert "new-star-wars" not in ids(answer(service))


def test_an_unavailable_new_item_never_appears(service):
    state = service.state
    put(service, "new-hit", **RELATED)
    send(service, [{"user_id": f"fan-{k}", "item_id": "new-hit"} for k in range(50)])
    view = state.new_items.view(state.holder.current)
    assert eventually(lambda: view.trending(state.events.features)[0] > 0)
    assert "new-hit" in ids(answer(service, "nobody"))  # trending, for a cold user
    put(service, "new-hit", available=False, **RELATED)
    for user in (USER, "2", "nobody", "nobody-else"):
        assert "new-hit" not in ids(answer(service, user, n=50))
    session = service.post("/v1/recommendations", json={"history": ["50", "172"], "n": 50})
    assert "new-hit" not in ids(session.json()["items"])
    assert "new-hit" not in ids(service.get("/v1/items/50/similar?n=50").json()["items"])
    assert "new-hit" not in ids(service.get("/v1/items/172/similar?n=50").json()["items"])


def test_a_consumed_or_disliked_new_item_leaves_the_users_answer(service):
    put(service, "new-star-wars", **RELATED)
    put(service, "new-star-wars-2", **{**RELATED, "title": "Star Wars: Empire Rising (2026)"})
    first = next(i["item_id"] for i in answer(service) if i["source"] == NEW_ITEM_SOURCE)
    send(service, [{"user_id": USER, "item_id": first, "event_type": "view"}])
    second = [i for i in answer(service) if i["source"] == NEW_ITEM_SOURCE]
    assert first not in ids(answer(service, n=50))
    assert ids(second) == [({"new-star-wars", "new-star-wars-2"} - {first}).pop()]
    send(service, [{"user_id": USER, "item_id": ids(second)[0], "event_type": "dislike"}])
    assert not {"new-star-wars", "new-star-wars-2"} & set(ids(answer(service, n=50)))
    # Another user still gets them.
    assert {"new-star-wars", "new-star-wars-2"} & set(ids(answer(service, "2")))


# -- trending -------------------------------------------------------------------------


def test_events_on_a_new_item_are_stored_and_make_it_trend(any_backend_service):
    from reco.store.events import events_since

    service = any_backend_service
    state = service.state
    put(service, "new-hit", **UNRELATED)
    assert "new-hit" not in ids(answer(service, "nobody-before"))
    fans = [{"user_id": f"fan-{k}", "item_id": "new-hit", "event_type": "like"} for k in range(30)]
    send(service, fans)
    assert events_since(state.engine, ["fan-0"], 0)["item_id"].tolist() == ["new-hit"]
    # Trending counts are reread at most every second (answers cached before keep theirs).
    view = state.new_items.view(state.holder.current)
    assert eventually(lambda: view.trending(state.events.features)[0] > 0)
    for user in ("nobody", USER):  # a cold user, and a known one it has no content for
        found = [item for item in answer(service, user) if item["item_id"] == "new-hit"]
        assert found and found[0]["source"] == NEW_ITEM_SOURCE
        assert found[0]["explanation"] == "new: trending this week"
    assert "new-hit" not in ids(answer(service, "fan-0", n=50)), "a fan consumed it"


# -- freshness: other workers, the cache, retraining ---------------------------------


def test_the_cache_follows_new_items(any_backend_service):
    service = any_backend_service
    fingerprint = service.state.catalog.fingerprint
    answer(service)
    cached = service.get(f"/v1/users/{USER}/recommendations?n=10")
    assert cached.headers["X-Cache"] == "hit"
    put(service, "new-star-wars", **RELATED)
    assert service.state.catalog.fingerprint != fingerprint
    fresh = service.get(f"/v1/users/{USER}/recommendations?n=10")
    assert fresh.headers["X-Cache"] == "miss"
    assert "new-star-wars" in ids(fresh.json()["items"])
    put(service, "new-star-wars", available=False, **RELATED)
    assert "new-star-wars" not in ids(answer(service))


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_another_workers_new_item_arrives_with_the_refresh(make_service, store, request):
    from reco.store.entities import put_item

    url = request.getfixturevalue("postgres_store_url") if store == "postgresql" else None
    service = make_service(database_url=url, catalog_refresh_seconds=0.1)
    # Written straight to the store, as another worker or process would.
    put_item(service.state.engine, "new-elsewhere", **RELATED)
    assert eventually(lambda: "new-elsewhere" in ids(answer(service)))
    put_item(service.state.engine, "new-elsewhere", available=False, **RELATED)
    assert eventually(lambda: "new-elsewhere" not in ids(answer(service)))


def test_the_set_is_bounded_and_follows_the_store(service):
    from reco.store.entities import delete_item, put_item

    model = service.state.holder.current
    engine = service.state.engine
    tracker = NewItems(engine, lambda: model, limit=3)
    for k in range(5):
        put_item(engine, f"bounded-{k}", title=f"Film {k}")
        time.sleep(0.01)  # distinct update times: the newest three are kept
    tracker.refresh()
    view = tracker.view(model)
    assert sorted(view.ids) == ["bounded-2", "bounded-3", "bounded-4"]
    fingerprint = tracker.fingerprint
    delete_item(engine, "bounded-4")
    put_item(engine, "bounded-3", title="Film 3", available=False)
    put_item(engine, "50", title="Star Wars (1977)")  # known to the model: never new
    tracker.refresh()  # rereads the rows changed lately
    # Two left; the newest live ones fill the set up to its limit again.
    assert sorted(tracker.view(model).ids) == ["bounded-0", "bounded-1", "bounded-2"]
    assert tracker.fingerprint != fingerprint
    assert tracker.view(model).vectors.shape[0] == 3


def test_a_refresh_rereads_only_rows_changed_since_the_last_read(service, monkeypatch):
    from reco.service import new_items
    from reco.store.entities import put_item

    ids_read: list[int] = []
    rows_read: list[list[str]] = []
    real_ids, real_rows = new_items._ids_updated_since, new_items._item_rows

    def counted_ids(engine, since):
        found = real_ids(engine, since)
        # Only this test's reads: the service's own refresher runs on its thread.
        if threading.current_thread() is threading.main_thread():
            ids_read.append(len(found))
        return found

    def counted_rows(engine, item_ids):
        if threading.current_thread() is threading.main_thread():
            rows_read.append(sorted(item_ids))
        return real_rows(engine, item_ids)

    monkeypatch.setattr(new_items, "_ids_updated_since", counted_ids)
    monkeypatch.setattr(new_items, "_item_rows", counted_rows)
    monkeypatch.setattr(new_items, "OVERLAP_SECONDS", 0.0)
    model = service.state.holder.current
    tracker = NewItems(service.state.engine, lambda: model)
    tracker.refresh()  # the full scan
    tracker.refresh()
    put_item(service.state.engine, "new-one", title="Film")
    put_item(service.state.engine, "50", title="Star Wars (1977)")  # known to the model
    tracker.refresh()
    # The whole catalogue was ingested at about one time: none of it is read again;
    # of the two changed rows only the new item's is read whole.
    assert ids_read == [0, 2]
    assert rows_read == [["new-one"]]
    assert tracker.view(model).ids == ["new-one"]


def test_a_promoted_version_trained_with_the_item_no_longer_counts_it_new(make_service):
    from reco.config import PipelineConfig
    from reco.store.repository import load_frames
    from reco.training.job import train

    service = make_service()
    put(service, "new-star-wars", **RELATED)
    send(service, [{"user_id": f"fan-{k}", "item_id": "new-star-wars"} for k in range(5)])
    old = service.state.holder.current
    assert "new-star-wars" in service.state.new_items.view(old).ids
    # Retrained as the served version was (its manifest records the configuration).
    trained_with = old.manifest["config"]
    settings = service.settings.model_copy(
        update={
            "pipeline": PipelineConfig(**trained_with["pipeline"]),
            "model_params": trained_with["model_params"],
        }
    )
    version = train(load_frames(service.state.engine), settings).version
    promoted = service.post(f"/v1/models/{version}/promote", role="admin")
    assert promoted.status_code == 200, promoted.text
    current = service.state.holder.current
    assert current.version == version and "new-star-wars" in current.pipeline.items
    assert service.state.new_items.view(current) is None
    similar = service.get("/v1/items/new-star-wars/similar")
    assert similar.status_code == 200
    assert all(item["source"] != NEW_ITEM_SOURCE for item in similar.json()["items"])


@pytest.mark.parametrize("field", ["title", "categories"])
def test_a_bad_item_is_a_422_and_changes_nothing(service, field):
    bad = {"title": 5} if field == "title" else {"categories": "Action"}
    response = service.put("/v1/items/new-bad", json=bad)
    assert response.status_code == 422
    assert service.state.new_items.view(service.state.holder.current) is None
