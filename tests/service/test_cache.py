"""Recommendation caches: hits, misses, TTL, LRU, invalidation; Redis and pub/sub for real."""

from __future__ import annotations

import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from reco.config import ServiceConfig, Settings
from reco.service.cache import MemoryCache, RedisCache, TwoLevelCache, cache_for
from reco.service.ratelimit import redis_from_url

DEAD_REDIS = "redis://127.0.0.1:1/0"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


# --- in memory ---------------------------------------------------------------------


def test_memory_miss_then_hit():
    cache = MemoryCache(10, 60)
    assert cache.get("u1", "n=10", "v1") is None
    cache.put("u1", "n=10", "v1", b"answer")
    assert cache.get("u1", "n=10", "v1") == b"answer"
    cache.put("u1", "n=10", "v1", b"newer")
    assert cache.get("u1", "n=10", "v1") == b"newer"
    assert len(cache) == 1


def test_memory_key_holds_user_params_and_version():
    cache = MemoryCache(10, 60)
    cache.put("u1", "n=10", "v1", b"answer")
    assert cache.get("u1", "n=10", "v2") is None
    assert cache.get("u1", "n=20", "v1") is None
    assert cache.get("u2", "n=10", "v1") is None


def test_memory_entries_expire_after_the_ttl():
    clock = FakeClock()
    cache = MemoryCache(10, 5.0, clock=clock)
    cache.put("u1", "p", "v", b"answer")
    clock.now += 4.9
    assert cache.get("u1", "p", "v") == b"answer"
    clock.now += 0.2
    assert cache.get("u1", "p", "v") is None
    assert len(cache) == 0


def test_memory_put_may_shorten_but_not_lengthen_the_ttl():
    clock = FakeClock()
    cache = MemoryCache(10, 5.0, clock=clock)
    cache.put("short", "p", "v", b"x", ttl=1.0)
    cache.put("long", "p", "v", b"x", ttl=100.0)
    cache.put("gone", "p", "v", b"x", ttl=0)
    clock.now += 1.5
    assert cache.get("short", "p", "v") is None
    assert cache.get("long", "p", "v") == b"x"
    clock.now += 4.0
    assert cache.get("long", "p", "v") is None
    assert cache.get("gone", "p", "v") is None


def test_memory_evicts_the_least_recently_used():
    cache = MemoryCache(3, 60)
    for user in "abc":
        cache.put(user, "p", "v", user.encode())
    assert cache.get("a", "p", "v") == b"a"  # a is now the most recently used
    cache.put("d", "p", "v", b"d")
    assert len(cache) == 3
    assert cache.get("b", "p", "v") is None
    assert [cache.get(u, "p", "v") for u in "acd"] == [b"a", b"c", b"d"]


def test_memory_invalidate_user_drops_only_that_user():
    cache = MemoryCache(100, 60)
    for params in ("n=10", "n=20", "n=10&category=a"):
        for version in ("v1", "v2"):
            cache.put("u1", params, version, b"x")
    cache.put("u2", "n=10", "v1", b"kept")
    cache.invalidate_user("u1")
    assert len(cache) == 1
    assert cache.get("u1", "n=10", "v1") is None
    assert cache.get("u2", "n=10", "v1") == b"kept"
    cache.invalidate_user("nobody")
    cache.put("u1", "n=10", "v1", b"again")
    assert cache.get("u1", "n=10", "v1") == b"again"


def test_memory_is_consistent_under_threads():
    cache = MemoryCache(50, 60)
    users = [f"u{i}" for i in range(20)]

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2000):
            user, params = rng.choice(users), f"n={rng.randint(1, 5)}"
            action = rng.random()
            if action < 0.5:
                cache.put(user, params, "v", user.encode())
            elif action < 0.9:
                assert cache.get(user, params, "v") in (None, user.encode())
            else:
                cache.invalidate_user(user)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    assert len(cache) <= 50
    for user in users:  # the per-user index must name every entry, or some would remain
        cache.invalidate_user(user)
    assert len(cache) == 0


@pytest.mark.parametrize(("entries", "ttl"), [(0, 1), (1, 0), (1, -1)])
def test_memory_bad_parameters_are_refused(entries, ttl):
    with pytest.raises(ValueError, match=r"max_entries|ttl"):
        MemoryCache(entries, ttl)


# --- in Redis ----------------------------------------------------------------------


@pytest.fixture()
def redis_client(redis_url):
    client = redis_from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {redis_url} is not usable ({exc}); run `make services`")
    yield client
    client.close()


@pytest.mark.redis
def test_redis_miss_then_hit_keyed_by_params_and_version(redis_client, prefix):
    cache = RedisCache(redis_client, 60, prefix=prefix)
    assert cache.get("u1", "n=10", "v1") is None
    cache.put("u1", "n=10", "v1", b"answer")
    assert cache.get("u1", "n=10", "v1") == b"answer"
    assert cache.get("u1", "n=10", "v2") is None
    assert cache.get("u1", "n=20", "v1") is None
    # One hash per user, a field per (params, version).
    assert redis_client.hlen(prefix + "u1") == 1


@pytest.mark.redis
def test_redis_fields_cannot_collide_across_params_and_version(redis_client, prefix):
    cache = RedisCache(redis_client, 60, prefix=prefix)
    cache.put("u1", "a|1", "2", b"first")
    assert cache.get("u1", "a", "1|2") is None
    cache.put("u1", "a", "1|2", b"second")
    assert cache.get("u1", "a|1", "2") == b"first"


@pytest.mark.redis
def test_redis_entries_expire_after_the_ttl(redis_client, prefix):
    cache = RedisCache(redis_client, 0.15, prefix=prefix)
    cache.put("u1", "p", "v", b"answer")
    assert 0 < redis_client.pttl(prefix + "u1") <= 151
    assert cache.get("u1", "p", "v") == b"answer"
    time.sleep(0.2)
    assert cache.get("u1", "p", "v") is None
    assert not redis_client.exists(prefix + "u1")


@pytest.mark.redis
def test_redis_each_entry_keeps_its_own_ttl(redis_client, prefix):
    # A later write renews the user's hash; the earlier answer must still expire on time.
    cache = RedisCache(redis_client, 0.2, prefix=prefix)
    cache.put("u1", "old", "v", b"old")
    time.sleep(0.12)
    cache.put("u1", "new", "v", b"new")
    time.sleep(0.1)
    assert cache.get("u1", "old", "v") is None
    assert cache.get("u1", "new", "v") == b"new"
    found = cache.lookup("u1", "new", "v")
    assert found is not None and 0 < found[1] < 0.11


@pytest.mark.redis
def test_redis_invalidate_user_deletes_their_hash(redis_client, prefix):
    cache = RedisCache(redis_client, 60, prefix=prefix)
    cache.put("u1", "a", "v", b"x")
    cache.put("u1", "b", "v", b"y")
    cache.put("u2", "a", "v", b"kept")
    cache.invalidate_user("u1")
    assert not redis_client.exists(prefix + "u1")
    assert cache.get("u1", "a", "v") is None
    assert cache.get("u2", "a", "v") == b"kept"


@pytest.mark.redis
@pytest.mark.parametrize(
    "user", ["../../etc/passwd", "'; FLUSHALL; --", "x" * 10_000, "数据 ü \x00 \ud800", "*"]
)
def test_redis_hostile_user_ids_are_just_keys(redis_client, prefix, user):
    cache = RedisCache(redis_client, 60, prefix=prefix)
    cache.put("neighbour", "p", "v", b"kept")
    cache.put(user, "p", "v", b"answer")
    assert cache.get(user, "p", "v") == b"answer"
    cache.invalidate_user(user)
    assert cache.get(user, "p", "v") is None
    assert cache.get("neighbour", "p", "v") == b"kept"


def test_redis_down_is_a_miss_with_one_warning(caplog):
    cache = RedisCache(redis_from_url(DEAD_REDIS), 60)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="reco.service.cache"):
        for _ in range(20):
            cache.put("u1", "p", "v", b"x")
            assert cache.get("u1", "p", "v") is None
        cache.invalidate_user("u1")
    assert time.perf_counter() - started < 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0]


# --- two levels --------------------------------------------------------------------


@pytest.fixture()
def workers(redis_url, prefix):
    """Two TwoLevelCaches on separate connections, as two worker processes would have."""
    channel = f"{prefix}invalidations"
    made = []
    for _ in range(2):
        client = redis_from_url(redis_url)
        shared = RedisCache(client, 60, prefix=prefix)
        made.append(TwoLevelCache(MemoryCache(100, 60), shared, client, channel=channel))
    yield made
    for cache in made:
        cache.close()
        cache.client.close()


@pytest.mark.redis
def test_two_level_reads_memory_first_then_redis(workers, redis_client, prefix):
    first, second = workers
    first.put("u1", "p", "v", b"answer")
    assert len(first.local) == 1 and redis_client.exists(prefix + "u1")
    redis_client.delete(prefix + "u1")
    assert first.get("u1", "p", "v") == b"answer"  # from memory
    assert second.get("u1", "p", "v") is None


@pytest.mark.redis
def test_two_level_redis_hit_fills_memory(workers):
    first, second = workers
    first.put("u1", "p", "v", b"answer")
    assert len(second.local) == 0
    assert second.get("u1", "p", "v") == b"answer"
    assert second.local.get("u1", "p", "v") == b"answer"


@pytest.mark.redis
def test_two_level_memory_copy_lives_no_longer_than_the_redis_entry(redis_url, prefix):
    client = redis_from_url(redis_url)
    writer = RedisCache(client, 0.3, prefix=prefix)
    cache = TwoLevelCache(
        MemoryCache(10, 60), RedisCache(client, 60, prefix=prefix), client, channel=prefix
    )
    try:
        writer.put("u1", "p", "v", b"answer")
        time.sleep(0.2)
        assert cache.get("u1", "p", "v") == b"answer"
        time.sleep(0.15)
        assert cache.local.get("u1", "p", "v") is None
    finally:
        cache.close()
        client.close()


@pytest.mark.redis
def test_invalidation_reaches_the_other_workers_memory(workers, redis_client, prefix):
    first, second = workers
    first.put("u1", "p", "v", b"stale")
    first.put("u2", "p", "v", b"other")
    assert second.get("u1", "p", "v") == b"stale"  # now in second's memory too
    assert second.get("u2", "p", "v") == b"other"

    first.invalidate_user("u1")
    assert first.get("u1", "p", "v") is None
    assert not redis_client.exists(prefix + "u1")
    assert wait_until(lambda: second.local.get("u1", "p", "v") is None, timeout=2.0)
    assert second.get("u1", "p", "v") is None
    assert second.local.get("u2", "p", "v") == b"other"


@pytest.mark.redis
def test_a_batch_of_users_is_invalidated_everywhere_in_one_announcement(
    workers, redis_client, prefix
):
    first, second = workers
    users = ["u1", "ü数据 \ud800", "u 3"]
    for user in [*users, "kept"]:
        first.put(user, "p", "v", b"stale")
        assert second.get(user, "p", "v") == b"stale"
    pubsub = redis_client.pubsub()
    pubsub.subscribe(first.channel)
    first.invalidate_users(users)
    assert not any(redis_client.exists(first.shared.redis_key(user)) for user in users)
    for user in users:
        assert wait_until(lambda user=user: second.local.get(user, "p", "v") is None)
    assert second.get("kept", "p", "v") == b"stale"
    announcements = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not announcements:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            announcements.append(message["data"])
    pubsub.close()
    assert len(announcements) == 1


@pytest.mark.redis
def test_memory_and_redis_caches_invalidate_many_users_at_once(redis_client, prefix):
    memory = MemoryCache(100, 60)
    shared = RedisCache(redis_client, 60, prefix=prefix)
    for cache in (memory, shared):
        for user in ("u1", "u2", "u3"):
            cache.put(user, "p", "v", b"x")
        cache.invalidate_users(["u1", "u3", "nobody"])
        cache.invalidate_users([])
        assert [cache.get(user, "p", "v") for user in ("u1", "u2", "u3")] == [None, b"x", None]


@pytest.mark.redis
def test_invalidation_of_unicode_user_reaches_other_worker(workers):
    first, second = workers
    user = "ü数据 \ud800"
    first.put(user, "p", "v", b"stale")
    assert second.get(user, "p", "v") == b"stale"
    first.invalidate_user(user)
    assert wait_until(lambda: second.local.get(user, "p", "v") is None)


@pytest.mark.redis
def test_listener_comes_back_after_its_connection_is_killed(redis_url, redis_client, prefix):
    name = f"reco-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url, client_name=name, socket_timeout=1.0)
    listener = TwoLevelCache(
        MemoryCache(10, 60), RedisCache(client, 60, prefix=prefix), client, channel=prefix
    )
    publisher_client = redis_from_url(redis_url)
    publisher = TwoLevelCache(
        MemoryCache(10, 60),
        RedisCache(publisher_client, 60, prefix=prefix),
        publisher_client,
        channel=prefix,
    )
    try:
        ids = [c["id"] for c in redis_client.client_list() if c.get("name") == name]
        assert ids
        for client_id in ids:
            redis_client.client_kill_filter(_id=client_id)

        def invalidation_arrives() -> bool:
            listener.put("u1", "p", "v", b"stale")
            publisher.invalidate_user("u1")
            return wait_until(lambda: listener.local.get("u1", "p", "v") is None, timeout=0.3)

        # Three in a row: resubscribed for good, not one lucky clear of memory on the way.
        assert wait_until(lambda: all(invalidation_arrives() for _ in range(3)), timeout=6.0)
    finally:
        listener.close()
        publisher.close()
        client.close()
        publisher_client.close()


@pytest.mark.redis
def test_only_users_with_cached_answers_are_announced(redis_client, prefix):
    cache = TwoLevelCache(
        MemoryCache(10, 60), RedisCache(redis_client, 60, prefix=prefix), redis_client,
        channel=prefix,
    )  # fmt: skip
    watcher = redis_client.pubsub(ignore_subscribe_messages=True)
    watcher.subscribe(prefix)
    try:
        cache.put("cached", "p", "v", b"answer")
        cache.invalidate_users(["never-cached", "cached"])
        cache.invalidate_users(["never-cached"])
        messages = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            message = watcher.get_message(timeout=0.05)
            if message is not None:
                messages.append(message["data"])
        # One announcement, naming only the user who had an answer to drop.
        assert messages == [b"cached"]
        assert cache.get("cached", "p", "v") is None
    finally:
        watcher.close()
        cache.close()


@pytest.mark.redis
def test_close_stops_the_listener_thread(workers):
    first, _ = workers
    assert first._thread.is_alive()
    started = time.perf_counter()
    first.close()
    assert not first._thread.is_alive()
    assert time.perf_counter() - started < 1.0


def test_two_level_with_redis_down_works_from_memory():
    client = redis_from_url(DEAD_REDIS)
    cache = TwoLevelCache(MemoryCache(10, 60), RedisCache(client, 60), client, channel="x")
    try:
        cache.put("u1", "p", "v", b"answer")
        assert cache.get("u1", "p", "v") == b"answer"
        cache.invalidate_user("u1")
        assert cache.get("u1", "p", "v") is None
    finally:
        cache.close()


# --- from settings -----------------------------------------------------------------


def test_settings_choose_the_cache(tmp_path, redis_url):
    off = Settings(home=tmp_path, service=ServiceConfig(cache_enabled=False))
    assert cache_for(off) is None

    memory = cache_for(
        Settings(
            home=tmp_path,
            redis_url=None,
            service=ServiceConfig(cache_max_entries=7, cache_ttl_seconds=3),
        )
    )
    assert isinstance(memory, MemoryCache)
    assert (memory.max_entries, memory.ttl) == (7, 3.0)


@pytest.mark.redis
def test_settings_with_redis_give_two_levels(tmp_path, redis_url, redis_client):
    settings = Settings(
        home=tmp_path, redis_url=redis_url, service=ServiceConfig(cache_ttl_seconds=5)
    )
    cache = cache_for(settings)
    user = f"test-{uuid.uuid4().hex}"
    try:
        assert isinstance(cache, TwoLevelCache)
        assert cache.shared.ttl == 5.0 and cache.local.ttl == 5.0
        cache.put(user, "p", "v", b"answer")
        assert redis_client.exists(cache.shared.redis_key(user))
    finally:
        cache.invalidate_user(user)
        cache.close()
