"""Token buckets: bursts, refill, retry_after; in memory and shared through real Redis."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from reco.config import ServiceConfig, Settings
from reco.service.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RedisOutage,
    RedisRateLimiter,
    rate_limiter_for,
    redis_from_url,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(limiter, key: str, times: int) -> list[Decision]:
    return [limiter.acquire(key) for _ in range(times)]


# --- in memory ---------------------------------------------------------------------


def test_memory_burst_then_denied_with_retry_after():
    clock = FakeClock()
    limiter = MemoryRateLimiter(rate=2.0, burst=3, clock=clock)
    decisions = drain(limiter, "k", 4)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(0.5)  # one token at 2/s
    clock.now += 0.2
    assert limiter.acquire("k").retry_after == pytest.approx(0.3)


def test_memory_refills_at_rate_and_never_beyond_burst():
    clock = FakeClock()
    limiter = MemoryRateLimiter(rate=10.0, burst=2, clock=clock)
    drain(limiter, "k", 2)
    assert not limiter.acquire("k").allowed
    clock.now += 0.1  # one token back
    assert limiter.acquire("k").allowed
    assert not limiter.acquire("k").allowed
    clock.now += 3600  # idle for an hour: still only `burst` tokens
    assert [d.allowed for d in drain(limiter, "k", 3)] == [True, True, False]


def test_memory_keys_have_their_own_buckets():
    limiter = MemoryRateLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed


def test_memory_forgets_buckets_that_are_full_again():
    clock = FakeClock()
    limiter = MemoryRateLimiter(rate=10.0, burst=5, clock=clock)
    for i in range(100):
        limiter.acquire(f"key-{i}")
    assert len(limiter) == 100
    clock.now += 0.6  # 5 tokens at 10/s: every bucket is full again
    limiter.acquire("fresh")
    assert len(limiter) == 1


def test_memory_is_exact_across_threads():
    limiter = MemoryRateLimiter(rate=1.0, burst=300, clock=FakeClock())
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(lambda _: limiter.acquire("shared"), range(800)))
    assert sum(d.allowed for d in decisions) == 300


def test_memory_refills_on_the_real_clock():
    limiter = MemoryRateLimiter(rate=20.0, burst=2)
    assert [d.allowed for d in drain(limiter, "k", 3)] == [True, True, False]
    denied = limiter.acquire("k")
    assert 0 < denied.retry_after <= 0.05
    time.sleep(denied.retry_after + 0.01)
    assert limiter.acquire("k").allowed


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0), (1, 1.5)])
def test_bad_parameters_are_refused(rate, burst):
    with pytest.raises(ValueError, match=r"rate|burst"):
        MemoryRateLimiter(rate, burst)


# --- in Redis ----------------------------------------------------------------------


@pytest.fixture()
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {redis_url} is not usable ({exc}); run `make services`")
    yield client
    client.close()


@pytest.mark.redis
def test_redis_burst_then_denied_with_retry_after(redis_client, prefix):
    limiter = RedisRateLimiter(redis_client, rate=2.0, burst=3, prefix=prefix)
    decisions = drain(limiter, "k", 4)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 0.4 < decisions[-1].retry_after <= 0.5
    assert decisions[0].retry_after == 0


@pytest.mark.redis
def test_redis_refills_on_the_server_clock(redis_client, prefix):
    limiter = RedisRateLimiter(redis_client, rate=20.0, burst=1, prefix=prefix)
    assert limiter.acquire("k").allowed
    denied = limiter.acquire("k")
    assert not denied.allowed and 0 < denied.retry_after <= 0.05
    time.sleep(denied.retry_after + 0.01)
    assert limiter.acquire("k").allowed


@pytest.mark.redis
def test_redis_bucket_is_shared_by_two_workers(redis_url, redis_client, prefix):
    # Two limiters on two connection pools stand for two worker processes.
    other_client = redis.Redis.from_url(redis_url)
    first = RedisRateLimiter(redis_client, rate=0.01, burst=10, prefix=prefix)
    second = RedisRateLimiter(other_client, rate=0.01, burst=10, prefix=prefix)
    decisions = [(first if i % 2 else second).acquire("key") for i in range(16)]
    other_client.close()
    assert sum(d.allowed for d in decisions) == 10
    assert all(d.allowed for d in decisions[:10])
    assert not any(d.allowed for d in decisions[10:])
    assert RedisRateLimiter(redis_client, 0.01, 10, prefix=prefix).acquire("other").allowed


@pytest.mark.redis
def test_redis_is_exact_across_threads(redis_url, redis_client, prefix):
    limiters = [
        RedisRateLimiter(redis.Redis.from_url(redis_url), rate=0.01, burst=50, prefix=prefix)
        for _ in range(2)
    ]
    start = threading.Barrier(8)

    def hammer(worker: int) -> int:
        start.wait()
        limiter = limiters[worker % 2]
        return sum(limiter.acquire("shared").allowed for _ in range(25))

    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = sum(pool.map(hammer, range(8)))
    assert allowed == 50


@pytest.mark.redis
def test_redis_leases_spare_the_round_trip_for_fast_keys(redis_client, prefix):
    # 1,000/s leases 50 tokens (the rate of 50 ms): one script call for 50 requests.
    limiter = RedisRateLimiter(redis_client, rate=1000.0, burst=100, prefix=prefix)
    assert limiter.lease == 50
    assert limiter.acquire("k").allowed
    stamp = redis_client.hget(prefix + "k", "ts")
    assert float(redis_client.hget(prefix + "k", "tokens")) < 51
    spent = [limiter.acquire_local("k") for _ in range(49)]
    assert all(d is not None and d.allowed for d in spent)
    assert limiter.acquire_local("k") is None  # the lease is spent: Redis decides next
    assert redis_client.hget(prefix + "k", "ts") == stamp  # Redis was not asked meanwhile


@pytest.mark.redis
def test_redis_leases_never_admit_more_than_the_bucket(redis_url, redis_client, prefix):
    # Two workers leasing from one bucket: together no more than burst + rate * time.
    workers = [
        RedisRateLimiter(redis.Redis.from_url(redis_url), rate=200.0, burst=40, prefix=prefix)
        for _ in range(2)
    ]
    assert workers[0].lease == 10
    started = time.monotonic()
    allowed = sum(workers[i % 2].acquire("shared").allowed for i in range(400))
    elapsed = time.monotonic() - started
    assert 40 <= allowed <= 40 + 200 * elapsed + 1


@pytest.mark.redis
def test_redis_unused_lease_expires(redis_client, prefix, monkeypatch):
    from reco.service import ratelimit

    monkeypatch.setattr(ratelimit, "LEASE_TTL_S", 0.05)
    limiter = RedisRateLimiter(redis_client, rate=1000.0, burst=100, prefix=prefix)
    assert limiter.acquire("k").allowed
    assert limiter.acquire_local("k") is not None
    time.sleep(0.1)
    assert limiter.acquire_local("k") is None


@pytest.mark.redis
def test_redis_leases_of_idle_keys_are_forgotten(redis_client, prefix, monkeypatch):
    from reco.service import ratelimit

    monkeypatch.setattr(ratelimit, "LEASE_TTL_S", 0.05)
    limiter = RedisRateLimiter(redis_client, rate=1000.0, burst=100, prefix=prefix)
    for k in range(20):
        assert limiter.acquire(f"idle-{k}").allowed
    assert len(limiter) == 20
    time.sleep(0.1)
    assert limiter.acquire("busy").allowed  # a new lease drops the expired ones
    assert len(limiter) == 1


@pytest.mark.redis
def test_redis_idle_bucket_expires(redis_client, prefix):
    limiter = RedisRateLimiter(redis_client, rate=10.0, burst=5, prefix=prefix)
    limiter.acquire("k")
    ttl_ms = redis_client.pttl(prefix + "k")
    assert 0 < ttl_ms <= 5 / 10 * 1000 + 1000


def test_redis_down_lets_requests_in_quickly_and_warns_once(caplog):
    limiter = RedisRateLimiter(redis_from_url("redis://127.0.0.1:1/0"), rate=1.0, burst=1)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="reco.service.ratelimit"):
        decisions = drain(limiter, "k", 50)
    assert time.perf_counter() - started < 1.0
    assert all(d.allowed for d in decisions)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()


# --- from settings -----------------------------------------------------------------


def test_settings_without_redis_give_a_memory_limiter(tmp_path):
    settings = Settings(
        home=tmp_path,
        redis_url=None,
        service=ServiceConfig(rate_limit_per_second=5, rate_limit_burst=7),
    )
    limiter = rate_limiter_for(settings)
    assert isinstance(limiter, MemoryRateLimiter)
    assert (limiter.rate, limiter.burst) == (5.0, 7)
    assert sum(d.allowed for d in drain(limiter, "k", 10)) == 7


@pytest.mark.redis
def test_settings_with_redis_give_a_shared_limiter(tmp_path, redis_url, redis_client):
    settings = Settings(
        home=tmp_path,
        redis_url=redis_url,
        service=ServiceConfig(rate_limit_per_second=0.01, rate_limit_burst=3),
    )
    limiter = rate_limiter_for(settings)
    assert isinstance(limiter, RedisRateLimiter)
    key = f"test-{uuid.uuid4().hex}"
    try:
        assert [d.allowed for d in drain(limiter, key, 4)] == [True, True, True, False]
        assert redis_client.exists(limiter.prefix + key)
    finally:
        redis_client.delete(limiter.prefix + key)


def test_outage_pauses_then_tries_again():
    outage = RedisOutage("test", pause=0.05)
    assert outage.available()
    outage.failed(redis.ConnectionError("refused"), "carrying on")
    assert not outage.available()
    time.sleep(0.06)
    assert outage.available()
