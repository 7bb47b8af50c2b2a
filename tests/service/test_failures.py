"""Failure behaviour of the live service (issue 5), each against real backends.

* The store becomes unreachable (PostgreSQL behind a TCP proxy the test cuts): writes
  answer 503 with Retry-After, reads go on from the loaded model, the online features
  and the cache; once it is back, nothing acknowledged is missing.
* Redis crashes and restarts while events flow (a redis-server of the test's own): the
  API keeps accepting, the bus catches up, the online counters equal the events stored.
* A batch with malformed events is refused whole, each bad event named by its index,
  nothing stored and nothing reaching the online features.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from reco.config import EventsConfig, ServiceConfig, Settings
from reco.service.app import create_app
from reco.service.keys import Role, create_key
from reco.store.db import open_store
from reco.store.events import watermark
from reco.store.repository import counts

PROBLEM = "application/problem+json"
WAIT = 60.0  # generous: the first wait replays the whole store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """Forwards a loopback port to ``target``; :meth:`cut` refuses new connections and
    breaks open ones (a server gone from the network), :meth:`restore` listens again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        """Accept connections (again)."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class App:
    """A started app on a private copy of the trained home, with a write key."""

    def __init__(self, settings: Settings) -> None:
        engine = open_store(settings.resolved_database_url)
        try:
            _, self.secret = create_key(engine, "failure-test", Role.WRITE)
        finally:
            engine.dispose()
        self.client = TestClient(create_app(settings), raise_server_exceptions=False)
        self.client.__enter__()

    @property
    def state(self):
        """The worker's ServiceState."""
        return self.client.app.state.service

    @property
    def headers(self) -> dict[str, str]:
        """Authorization."""
        return {"Authorization": f"Bearer {self.secret}"}

    def recommend(self, user: str):
        """GET the user's recommendations."""
        return self.client.get(f"/v1/users/{user}/recommendations?n=10", headers=self.headers)

    def post(self, events):
        """POST events."""
        return self.client.post("/v1/events", json=events, headers=self.headers)

    def close(self) -> None:
        """Stop it."""
        self.client.__exit__(None, None, None)


def _settings(trained_home, tmp_path: Path, **changes) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(trained_home.path, home, symlinks=True)
    service = ServiceConfig(rate_limit_per_second=10_000.0, rate_limit_burst=10_000)
    return Settings(home=home, service=service, **changes)


@pytest.fixture()
def start_app() -> Iterator[Callable[[Settings], App]]:
    """Start apps; all are stopped afterwards."""
    apps: list[App] = []

    def start(settings: Settings) -> App:
        apps.append(App(settings))
        return apps[-1]

    yield start
    for app in reversed(apps):
        app.close()


@pytest.mark.postgres
def test_an_unreachable_store_refuses_writes_and_keeps_serving_reads(
    trained_home, tmp_path, postgres_store_url, start_app
):
    url = make_url(postgres_store_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.restore()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = start_app(_settings(trained_home, tmp_path, database_url=proxied))
    start = watermark(app.state.engine)
    try:
        accepted = app.post([{"user_id": "7", "item_id": str(i)} for i in (1, 2, 3)])
        assert accepted.status_code == 202
        # The replay of the store and these events applied: no invalidation to come.
        assert app.state.events.wait_processed(watermark(app.state.engine), timeout=WAIT)
        cached = app.recommend("1")
        assert cached.status_code == 200, cached.text

        proxy.cut()
        time.sleep(1.2)  # past the one-second memo of verified keys: auth meets the outage
        refused = app.post({"user_id": "7", "item_id": "4"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert int(refused.headers["Retry-After"]) >= 1
        assert "store" in refused.json()["detail"]
        again = app.recommend("1")
        assert again.status_code == 200 and again.headers["X-Cache"] == "hit"
        assert again.json()["items"] == cached.json()["items"]
        fresh = app.recommend("7")  # not cached: the model plus the online history
        assert fresh.status_code == 200, fresh.text
        assert not {"1", "2", "3"} & {i["item_id"] for i in fresh.json()["items"]}
        assert app.recommend("a-new-user").status_code == 200  # cold route
        assert app.client.get("/health/ready").status_code == 503
    finally:
        proxy.restore()

    deadline = time.monotonic() + WAIT
    while (response := app.post({"user_id": "7", "item_id": "5"})).status_code == 503:
        assert time.monotonic() < deadline, "writes did not come back with the store"
        time.sleep(0.1)
    assert response.status_code == 202, response.text
    stored = app.state.online.recent_events(app.state.engine, "7", start).frame
    assert {"1", "2", "3", "5"} <= set(stored["item_id"]) and "4" not in set(stored["item_id"])
    proxy.cut()


@pytest.mark.redis
def test_redis_restarting_while_events_flow_loses_and_doubles_nothing(
    trained_home, tmp_path, start_app, redis_server
):
    server = redis_server(persistent=True)
    try:
        prefix = f"test:failures:{uuid.uuid4().hex[:8]}:"
        events = EventsConfig(
            bus="redis",
            stream=prefix + "stream",
            key_prefix=prefix + "f:",
            group="workers",
            process_in_service=True,
            block_ms=50,
        )
        app = start_app(_settings(trained_home, tmp_path, redis_url=server.url, events=events))
        runtime = app.state.events
        assert runtime.wait_processed(watermark(app.state.engine), timeout=WAIT)

        statuses: list[int] = []
        stop = threading.Event()

        def send() -> None:
            k = 0
            while not stop.is_set():
                batch = [
                    {"user_id": f"flow-{k % 17}", "item_id": str(1 + (k * 7 + j) % 300),
                     "event_type": "view", "event_id": f"flow-{k}-{j}"}
                    for j in range(5)
                ]  # fmt: skip
                statuses.append(app.post(batch).status_code)
                k += 1
                time.sleep(0.01)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            time.sleep(0.5)
            server.kill()
            time.sleep(1.5)
            during = len(statuses)
            server.start()
            time.sleep(0.5)
        finally:
            stop.set()
            sender.join()
        assert statuses and set(statuses) == {202}, sorted(set(statuses))
        assert during > 10, "too few requests while Redis was down to tell anything"
        engine = app.state.engine
        assert runtime.wait_processed(watermark(engine), timeout=WAIT)
        total = counts(engine)["interactions"]
        assert runtime.features.events_applied() == total
        assert sum(runtime.features.item_counts([str(i) for i in range(1, 1683)])) == total
    finally:
        server.kill()


def test_a_batch_with_malformed_events_is_refused_whole(trained_home, tmp_path, start_app):
    app = start_app(_settings(trained_home, tmp_path))
    runtime = app.state.events
    engine = app.state.engine
    assert runtime.wait_processed(watermark(engine), timeout=WAIT)
    before, applied = counts(engine)["interactions"], runtime.features.events_applied()
    batch = [
        {"user_id": "1", "item_id": "10", "event_type": "view"},
        {"user_id": "1", "item_id": "11", "event_type": "wink"},
        {"user_id": "1", "item_id": "12", "timestamp": "yesterday-ish"},
        {"user_id": "1", "item_id": "13", "event_type": "like"},
        {"user_id": "1", "item_id": "14", "event_type": "dislike", "value": "lots"},
    ]
    response = app.post(batch)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    fields = {e.get("field", "") for e in response.json()["errors"]}
    assert "body.list[EventIn].4.value" in fields  # refused by the schema, as a whole
    # Everything but the bad value: the unknown type and the bad time, by index.
    fixed = [e for k, e in enumerate(batch) if k != 4]
    response = app.post(fixed)
    assert response.status_code == 422
    messages = [e["message"] for e in response.json()["errors"]]
    assert [m.split(":", 1)[0] for m in messages] == ["event 1", "event 2"]
    assert "wink" in messages[0] and "timestamp" in messages[1]
    time.sleep(0.2)
    assert counts(engine)["interactions"] == before
    assert runtime.features.events_applied() == applied
    assert app.post([batch[0], batch[3]]).status_code == 202
