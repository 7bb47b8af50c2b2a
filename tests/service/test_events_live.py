"""Events count at once: the app's event path end to end (httpx against the ASGI app).

The in-process bus on SQLite (each app relays and processes the store's events
itself), and Redis Streams with a processor running apart from the app, as
``reco worker`` would. One event changes the next answer: the item leaves it and the
item-kNN neighbours of the consumed item score higher; a disliked item never comes
back; many events on one item make it trending; unknown event types are refused.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from reco.config import EventsConfig, ServiceConfig, Settings
from reco.events import EventsRuntime
from reco.pipeline.sources import dense_scores
from reco.service.app import create_app
from reco.service.keys import Role, create_key
from reco.service.recommending import user_history
from reco.store.db import open_store
from reco.store.events import watermark

USER = "1"
WAIT = 30.0


class App:
    """A started app with a write key, on a private copy of the trained home."""

    def __init__(self, settings: Settings) -> None:
        engine = open_store(settings.resolved_database_url)
        try:
            _, self.secret = create_key(engine, "live-test", Role.WRITE)
        finally:
            engine.dispose()
        self.settings = settings
        self.client = TestClient(create_app(settings), raise_server_exceptions=False)
        self.client.__enter__()

    @property
    def state(self):
        """The worker's ServiceState."""
        return self.client.app.state.service

    def items(self, user: str, n: int = 20) -> list[str]:
        """The ids recommended to ``user``."""
        response = self.client.get(f"/v1/users/{user}/recommendations?n={n}", headers=self._auth())
        assert response.status_code == 200, response.text
        return [item["item_id"] for item in response.json()["items"]]

    def send(self, events: list[dict] | dict) -> int:
        """POST events; the largest stored event id after the 202."""
        response = self.client.post("/v1/events", json=events, headers=self._auth())
        assert response.status_code == 202, response.text
        return watermark(self.state.engine)

    def processed(self, event_id: int) -> None:
        """Wait until the event path applied everything up to ``event_id``."""
        assert self.state.events.wait_processed(event_id, timeout=WAIT)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def close(self) -> None:
        """Stop the app (its lifespan stops the event path)."""
        self.client.__exit__(None, None, None)


def _home(trained_home, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(trained_home.path, target, symlinks=True)
    return target


def _service() -> ServiceConfig:
    return ServiceConfig(auth_enabled=True, rate_limit_per_second=10_000.0, rate_limit_burst=10_000)


@pytest.fixture()
def memory_app(trained_home, tmp_path: Path) -> Iterator[App]:
    """The embedded default: SQLite, in-process bus and processing, memory features."""
    app = App(Settings(home=_home(trained_home, tmp_path), service=_service()))
    app.state.online.trending_refresh_seconds = 0.0
    assert app.processed(watermark(app.state.engine)) is None  # the replay of the store
    yield app
    app.close()


@pytest.fixture()
def redis_app(trained_home, tmp_path: Path, redis_url: str) -> Iterator[App]:
    """Redis Streams: the app only relays; a separate processor (a worker) applies."""
    prefix = f"test:live:{uuid.uuid4().hex[:10]}:"
    events = EventsConfig(
        bus="redis", stream=prefix + "stream", key_prefix=prefix + "f:", group="workers"
    )
    settings = Settings(
        home=_home(trained_home, tmp_path), redis_url=redis_url, service=_service(), events=events
    )
    app = App(settings)
    app.state.online.trending_refresh_seconds = 0.0
    worker_engine = open_store(settings.resolved_database_url)
    worker = EventsRuntime.from_settings(settings, worker_engine, relay=False, process=True)
    worker.start()
    try:
        app.processed(watermark(app.state.engine))
        yield app
    finally:
        app.close()
        worker.stop()
        worker_engine.dispose()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def live_app(request: pytest.FixtureRequest) -> App:
    """The app on each event bus."""
    return request.getfixturevalue(f"{request.param}_app")


def _unseen_item(app: App, user: str) -> str:
    """A popular item ``user`` never interacted with."""
    pipeline = app.state.holder.current.pipeline
    row = pipeline.histories_for([user]).matrix[0]
    seen = set(row.indices.tolist())
    for index in pipeline.fallback_order:
        if int(index) not in seen:
            return str(pipeline.items.ids[index])
    raise AssertionError("the user has seen everything")


def test_one_event_leaves_the_next_answer(live_app: App):
    consumed = live_app.items(USER)[0]
    live_app.send({"user_id": USER, "item_id": consumed, "event_type": "view"})
    # At once (the store's unapplied tail), and after processing (the online history).
    assert consumed not in live_app.items(USER)
    live_app.processed(watermark(live_app.state.engine))
    assert consumed not in live_app.items(USER)


def test_one_event_raises_the_neighbours_of_the_consumed_item(live_app: App):
    state = live_app.state
    model = state.holder.current
    itemknn = model.pipeline.sources["itemknn"]
    consumed = _unseen_item(live_app, USER)

    def scores() -> np.ndarray:
        histories = user_history(state, model, USER).histories
        return dense_scores(itemknn, histories.matrix, histories.users)[0]

    before = scores()
    last = live_app.send({"user_id": USER, "item_id": consumed, "event_type": "click"})
    live_app.processed(last)
    online = state.events.features.recent_history([USER])[0]
    assert consumed in [entry.item for entry in online]
    after = scores()
    index = int(model.pipeline.items.lookup([consumed])[0])
    column = itemknn.similarity_[:, [index]].toarray().ravel()
    neighbours = np.argsort(-column)[:10]
    assert (after[neighbours] > before[neighbours]).all()


def test_a_disliked_item_is_never_recommended_again(live_app: App):
    state = live_app.state
    model = state.holder.current
    disliked = live_app.items("2")[0]
    last = live_app.send({"user_id": "2", "item_id": disliked, "event_type": "dislike"})
    assert disliked in user_history(state, model, "2").dislikes  # from the store's tail
    live_app.processed(last)
    assert disliked in state.events.features.dislikes("2")
    assert disliked in user_history(state, model, "2").dislikes  # from the online features
    for n in (5, 20, 100):
        assert disliked not in live_app.items("2", n)
    rerank = live_app.client.post(
        "/v1/recommendations",
        json={"user_id": "2", "candidates": [disliked, "1", "2", "3"]},
        headers=live_app._auth(),
    )
    assert rerank.status_code == 200, rerank.text
    assert disliked not in [item["item_id"] for item in rerank.json()["items"]]


def test_many_events_on_one_item_make_it_trending(live_app: App):
    pipeline = live_app.state.holder.current.pipeline
    counts = pipeline.catalog.counts
    rare = str(pipeline.items.ids[np.flatnonzero(counts > 0)[np.argmin(counts[counts > 0])]])
    assert rare not in live_app.items("nobody-before", 10)
    fans = [{"user_id": f"fan-{k}", "item_id": rare, "event_type": "like"} for k in range(300)]
    last = live_app.send(fans)
    live_app.processed(last)
    features = live_app.state.events.features
    assert features.top_trending(1)[0][0] == rare
    # The pipeline the app answers with: its trending source now leads with the item.
    served = live_app.state.online.pipeline(pipeline)
    histories = user_history(live_app.state, live_app.state.holder.current, USER).histories
    blocked = np.zeros((1, len(pipeline.items)), dtype=bool)
    top, _ = served.generator.source_top("trending", histories, [{}], blocked, 5)
    assert str(pipeline.items.ids[top[0, 0]]) == rare
    trained, _ = pipeline.generator.source_top("trending", histories, [{}], blocked, 5)
    assert str(pipeline.items.ids[trained[0, 0]]) != rare
    if pipeline.config.cold_trending_weight:
        # Cold answers blend trending in (the weight chosen on validation may be 0).
        answer = live_app.items("nobody-after", 10)
        assert rare in answer


def test_an_unknown_event_type_is_refused_with_its_index(live_app: App):
    engine = live_app.state.engine
    before = watermark(engine)
    batch = [
        {"user_id": USER, "item_id": "1", "event_type": "view"},
        {"user_id": USER, "item_id": "2", "event_type": "teleport"},
        {"user_id": USER, "item_id": "3"},
        {"user_id": USER, "item_id": "4", "event_type": "zap", "timestamp": "not a time"},
    ]
    response = live_app.client.post("/v1/events", json=batch, headers=live_app._auth())
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    messages = [e["message"] for e in response.json()["errors"]]
    assert [m.split(":", 1)[0] for m in messages] == ["event 1", "event 3", "event 3"]
    assert "'teleport' is not a known event type" in messages[0]
    assert "click, dislike" in messages[0] and "timestamp" in messages[2]
    assert watermark(engine) == before
