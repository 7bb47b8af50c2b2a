"""Connection balance between workers: shared counts, when a worker closes one."""

from __future__ import annotations

import asyncio

import pytest

from reco.service.balance import STALE_SECONDS, ConnectionBalance


@pytest.fixture()
def pair(tmp_path):
    """Two workers' balances over one folder."""
    first = ConnectionBalance(tmp_path, 2, window=1.0, close_every=0.2, margin=2).open()
    second = ConnectionBalance(tmp_path, 2, window=1.0, close_every=0.2, margin=2).open()
    yield first, second
    first.close()
    second.close()


def test_each_worker_claims_its_own_slot_and_a_third_finds_none(tmp_path, pair):
    first, second = pair
    assert {first.slot, second.slot} == {0, 1}
    with pytest.raises(RuntimeError, match="every one of the 2 worker slots"):
        ConnectionBalance(tmp_path, 2).open()


def test_the_busier_worker_closes_one_connection_at_a_time(pair):
    busy, idle = pair
    idle.refresh(now=100.0)
    closes = [busy.should_close(("127.0.0.1", port), now=100.0) for port in range(1, 6)]
    # One closes as soon as it holds two more than the idle worker; the next only after
    # close_every, however unbalanced.
    assert closes == [False, True, False, False, False]
    assert busy.should_close(("127.0.0.1", 9), now=100.1) is False
    assert busy.should_close(("127.0.0.1", 9), now=100.25) is True


def test_balanced_workers_keep_their_connections(pair):
    first, second = pair
    for port in range(8):
        assert second.should_close(("10.0.0.2", port), now=50.0) is False
    for port in range(9):
        assert first.should_close(("10.0.0.1", port), now=50.0) is False  # 9 vs 8: margin 2


def test_a_gone_worker_and_quiet_connections_do_not_count(pair):
    busy, gone = pair
    gone.refresh(now=10.0)
    later = 10.0 + STALE_SECONDS + 1
    # The other worker stopped writing its slot: nobody to hand connections to.
    assert not any(busy.should_close(("h", port), now=later) for port in range(6))
    gone.refresh(now=later)
    # Connections quiet for longer than the window are no longer active.
    busy.refresh(now=later + 1.5)
    assert busy.should_close(("h", 99), now=later + 1.5) is False


def test_the_middleware_answers_connection_close_when_the_worker_is_busier(pair):
    from reco.service.metrics import ServiceMetrics
    from reco.service.middleware import ServiceMiddleware

    busy, idle = pair
    idle.refresh()

    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = ServiceMiddleware(ok, metrics=ServiceMetrics(), max_body_bytes=1024, balance=busy)

    def headers_for(port: int) -> dict[bytes, bytes]:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/health/live",
            "headers": [],
            "client": ("127.0.0.1", port),
        }
        asyncio.run(middleware(scope, receive, send))
        return dict(sent[0]["headers"])

    first, second = headers_for(1), headers_for(2)
    assert b"connection" not in first
    assert second[b"connection"] == b"close"  # two more active than the idle worker
    assert b"x-request-id" in second


def test_only_a_multi_worker_serve_balances(tmp_path, monkeypatch):
    from reco.service.balance import BALANCE_DIR_ENV, balance_for

    monkeypatch.delenv(BALANCE_DIR_ENV, raising=False)
    assert balance_for(2) is None  # not started by `reco serve --workers N`
    monkeypatch.setenv(BALANCE_DIR_ENV, str(tmp_path))
    assert balance_for(1) is None
    balance = balance_for(2).open()
    try:
        assert balance is not None and balance.slot == 0
    finally:
        balance.close()
