"""The recommendation cache: answers keyed by user, request parameters and model version.

A new model version misses by construction (the version is part of the key); a user's
new events drop every answer cached for that user (:meth:`invalidate_user`); the TTL
bounds everything else (e.g. an item made unavailable). Three backends:

* :class:`MemoryCache`, an LRU with TTL in this process (the default);
* :class:`RedisCache`, one Redis hash per user, shared by every worker and replica;
* :class:`TwoLevelCache`, memory in front of Redis, whose invalidations reach every
  worker's memory through Redis pub/sub.

A Redis failure never fails a request: it is logged (at most every few seconds) and
the cache behaves as a miss.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from reco.service.ratelimit import REDIS_PAUSE_S, REDIS_TIMEOUT_S, RedisOutage, redis_from_url

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub

    from reco.config import Settings

log = logging.getLogger(__name__)

# Channel on which TwoLevelCache announces invalidated users to the other workers.
INVALIDATION_CHANNEL = "reco:cache:invalidations"
# How often the listener thread wakes up to check it should stop.
_LISTEN_POLL_S = 0.1
# A cached value in Redis starts with its expiry (Unix time, big-endian double).
_DEADLINE = struct.Struct(">d")


class RecommendationCache(Protocol):
    """What the service needs from a cache of serialized answers."""

    def get(self, user: str, params: str, version: str) -> bytes | None:
        """The cached answer, or None on a miss."""
        ...

    def get_local(self, user: str, params: str, version: str) -> bytes | None:
        """The cached answer if this process holds it (no I/O: safe on the event loop),
        else None: :meth:`get` may still find it."""
        ...

    def put(self, user: str, params: str, version: str, value: bytes) -> None:
        """Cache an answer for the TTL."""
        ...

    def invalidate_user(self, user: str) -> None:
        """Forget every answer cached for ``user``."""
        ...

    def invalidate_users(self, users: Sequence[str]) -> None:
        """Forget every answer cached for each of ``users`` (one round trip)."""
        ...

    def close(self) -> None:
        """Release threads and connections."""
        ...


class MemoryCache:
    """An LRU cache with TTL in this process, safe to share between threads.

    Holds at most ``max_entries`` answers (the least recently used goes first); each
    lives ``ttl`` seconds. An index of each user's entries makes
    :meth:`invalidate_user` cost what that user has cached, not the whole cache.
    """

    def __init__(
        self, max_entries: int, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.max_entries = int(max_entries)
        self.ttl = float(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        # (user, params, version) -> (expires at, value); least recently used first.
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
        self._by_user: dict[str, set[tuple[str, str]]] = {}

    def get(self, user: str, params: str, version: str) -> bytes | None:
        """The cached answer if present and not expired (it becomes most recently used)."""
        key = (user, params, version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def get_local(self, user: str, params: str, version: str) -> bytes | None:
        """The same as :meth:`get`: this cache is in memory."""
        return self.get(user, params, version)

    def put(
        self, user: str, params: str, version: str, value: bytes, *, ttl: float | None = None
    ) -> None:
        """Cache an answer for ``ttl`` seconds (default and most: the cache's TTL)."""
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0:
            return
        key = (user, params, version)
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (self._clock() + ttl, value)
            self._by_user.setdefault(user, set()).add((params, version))
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))

    def invalidate_user(self, user: str) -> None:
        """Forget every answer cached for ``user``."""
        self.invalidate_users([user])

    def invalidate_users(self, users: Sequence[str]) -> None:
        """Forget every answer cached for each of ``users``."""
        with self._lock:
            for user in users:
                for params, version in self._by_user.pop(user, ()):
                    del self._entries[(user, params, version)]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._by_user.clear()

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: tuple[str, str, str]) -> None:
        user, params, version = key
        del self._entries[key]
        keys = self._by_user[user]
        keys.discard((params, version))
        if not keys:
            del self._by_user[user]


def _text(value: str) -> bytes:
    # Ids come from URLs and may hold lone surrogates; keep them distinct, never fail.
    return value.encode("utf-8", "surrogatepass")


# KEYS: the users' cache hashes; ARGV[1]: the channel, then the users in KEYS's order.
# Ids never hold control characters (the store refuses them): a newline separates.
_DROP_LUA = """
local dropped = {}
for i, key in ipairs(KEYS) do
  if redis.call('DEL', key) == 1 then dropped[#dropped + 1] = ARGV[i + 1] end
end
if #dropped > 0 then redis.call('PUBLISH', ARGV[1], table.concat(dropped, '\\n')) end
return #dropped
"""


class RedisCache:
    """Answers in Redis: one hash per user, a field per (parameters, model version).

    The hash expires ``ttl`` seconds after its last write and each value carries its own
    expiry, so no answer outlives the TTL; :meth:`invalidate_user` is one DEL. The client
    belongs to the caller (build it with :func:`~reco.service.ratelimit.redis_from_url`).
    """

    def __init__(self, client: redis.Redis, ttl: float, prefix: str = "reco:cache:") -> None:
        import redis

        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.client = client
        self.ttl = float(ttl)
        self.prefix = prefix
        self._redis_error = redis.RedisError
        self._outage = RedisOutage("recommendation cache", logger=log)
        self._drop = client.register_script(_DROP_LUA)

    def redis_key(self, user: str) -> bytes:
        """The Redis key of ``user``'s hash."""
        return _text(self.prefix) + _text(user)

    @staticmethod
    def _field(params: str, version: str) -> bytes:
        # Length-prefixed, so no parameters/version pair can spell another one.
        return _text(f"{len(params)}:{params}|{version}")

    def lookup(self, user: str, params: str, version: str) -> tuple[bytes, float] | None:
        """The cached answer and the seconds it has left, or None on a miss."""
        if not self._outage.available():
            return None
        key, field = self.redis_key(user), self._field(params, version)
        try:
            stored = self.client.hget(key, field)
            if stored is None:
                return None
            (deadline,) = _DEADLINE.unpack_from(stored)
            left = deadline - time.time()
            if left <= 0:
                self.client.hdel(key, field)
                return None
        except self._redis_error as exc:
            self._outage.failed(exc, "answering without the shared cache")
            return None
        return stored[_DEADLINE.size :], left

    def get(self, user: str, params: str, version: str) -> bytes | None:
        """The cached answer, or None on a miss (or when Redis fails)."""
        found = self.lookup(user, params, version)
        return None if found is None else found[0]

    def get_local(self, user: str, params: str, version: str) -> bytes | None:
        """None: every answer is in Redis, behind a round trip."""
        return None

    def put(self, user: str, params: str, version: str, value: bytes) -> None:
        """Cache an answer for the TTL (skipped, with a warning, when Redis fails)."""
        if not self._outage.available():
            return
        key = self.redis_key(user)
        stored = _DEADLINE.pack(time.time() + self.ttl) + value
        try:
            pipe = self.client.pipeline()
            pipe.hset(key, self._field(params, version), stored)
            pipe.pexpire(key, int(self.ttl * 1000) + 1)
            pipe.execute()
        except self._redis_error as exc:
            self._outage.failed(exc, "answering without the shared cache")

    def invalidate_user(self, user: str) -> None:
        """Forget every answer cached for ``user`` (tried even while Redis looked down)."""
        self.invalidate_users([user])

    def invalidate_users(self, users: Sequence[str]) -> None:
        """Forget every answer cached for each of ``users``, in one command (tried even
        while Redis looked down)."""
        if not users:
            return
        try:
            self.client.delete(*(self.redis_key(user) for user in users))
        except self._redis_error as exc:
            self._outage.failed(exc, "cached answers may be stale for up to the TTL")

    def drop_and_announce(self, users: Sequence[str], channel: str = INVALIDATION_CHANNEL) -> None:
        """Delete these users' answers and announce, on ``channel``, the users who had
        some (every worker's TwoLevelCache drops them from its memory), in one round
        trip. Raises the client's error when Redis fails.

        A user with nothing in Redis has nothing in any worker's memory either (memory
        only holds answers also written to, or read from, Redis), so announcing them
        would only make every worker's listener busy: under single-event ingestion that
        was most of the announcements.
        """
        keys = [self.redis_key(user) for user in users]
        self._drop(keys=keys, args=[_text(channel), *(_text(u) for u in users)])

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""


class TwoLevelCache:
    """This process's :class:`MemoryCache` in front of a shared :class:`RedisCache`.

    A read tries memory, then Redis (copying a Redis hit into memory for the time it has
    left). Invalidating a user deletes it in both and publishes the user on ``channel``;
    a daemon thread of every TwoLevelCache subscribed there drops the user from its own
    memory, so no worker keeps serving an answer another worker invalidated. If the
    subscription is lost, memory is cleared when it is back (announcements in between
    were missed). Create one per worker process, after forking; :meth:`close` stops
    the thread.
    """

    def __init__(
        self,
        local: MemoryCache,
        shared: RedisCache,
        client: redis.Redis,
        *,
        channel: str = INVALIDATION_CHANNEL,
    ) -> None:
        import redis

        self.local = local
        self.shared = shared
        self.client = client
        self.channel = channel
        self._redis_error = redis.RedisError
        self._outage = RedisOutage("recommendation cache invalidations", logger=log)
        self._stop = threading.Event()
        # Subscribed before __init__ returns: nothing published afterwards is missed.
        pubsub = self._subscribe()
        self._thread = threading.Thread(
            target=self._listen, args=(pubsub,), name="reco-cache-invalidations", daemon=True
        )
        self._thread.start()

    def get_local(self, user: str, params: str, version: str) -> bytes | None:
        """The answer if this worker's memory holds it."""
        return self.local.get(user, params, version)

    def get(self, user: str, params: str, version: str) -> bytes | None:
        """The answer from memory, else from Redis (kept in memory for its time left)."""
        value = self.local.get(user, params, version)
        if value is not None:
            return value
        found = self.shared.lookup(user, params, version)
        if found is None:
            return None
        value, left = found
        self.local.put(user, params, version, value, ttl=left)
        return value

    def put(self, user: str, params: str, version: str, value: bytes) -> None:
        """Cache an answer in memory and in Redis."""
        self.local.put(user, params, version, value)
        self.shared.put(user, params, version, value)

    def invalidate_user(self, user: str) -> None:
        """Forget ``user``'s answers here, in Redis, and in every other worker's memory."""
        self.invalidate_users([user])

    def invalidate_users(self, users: Sequence[str]) -> None:
        """Forget these users' answers here, in Redis, and in every other worker's
        memory: one round trip and one announcement for all of them."""
        if not users:
            return
        self.local.invalidate_users(users)
        try:
            self.shared.drop_and_announce(users, self.channel)
        except self._redis_error as exc:
            self._outage.failed(exc, "other workers may serve stale answers for up to the TTL")

    def close(self) -> None:
        """Stop the listener thread (within about a tenth of a second)."""
        self._stop.set()
        self._thread.join(timeout=REDIS_TIMEOUT_S + 1)

    def _subscribe(self) -> PubSub | None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + REDIS_TIMEOUT_S
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=_LISTEN_POLL_S)
                if message is not None and message["type"] == "subscribe":
                    return pubsub
            raise TimeoutError(f"Redis did not confirm the subscription to {self.channel}")
        except (self._redis_error, TimeoutError) as exc:
            pubsub.close()
            self._outage.failed(exc, "other workers' invalidations reach this one only by TTL")
            return None

    def _listen(self, pubsub: PubSub | None) -> None:
        while not self._stop.is_set():
            if pubsub is None:
                if self._stop.wait(REDIS_PAUSE_S):
                    break
                pubsub = self._subscribe()
                if pubsub is not None:
                    self.local.clear()  # announcements made while away were missed
                continue
            try:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=_LISTEN_POLL_S)
            except (self._redis_error, OSError) as exc:
                pubsub.close()
                pubsub = None
                self.local.clear()
                self._outage.failed(exc, "resubscribing")
                continue
            if message is not None and message["type"] == "message":
                self.local.invalidate_users(_users_of(message["data"]))
        if pubsub is not None:
            pubsub.close()


def _users_of(announcement: bytes) -> list[str]:
    return announcement.decode("utf-8", "surrogatepass").split("\n")


def cache_for(settings: Settings) -> RecommendationCache | None:
    """The cache ``settings`` ask for: None when disabled, memory in front of Redis when
    ``redis_url`` is set, else memory alone. Call it in each worker process."""
    service = settings.service
    if not service.cache_enabled:
        return None
    local = MemoryCache(service.cache_max_entries, service.cache_ttl_seconds)
    if not settings.redis_url:
        return local
    client = redis_from_url(settings.redis_url)
    return TwoLevelCache(local, RedisCache(client, service.cache_ttl_seconds), client)
