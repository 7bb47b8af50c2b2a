"""Rate limits per API key: a token bucket, in this process or shared through Redis.

Each key may make ``burst`` requests at once and ``rate`` per second after that: its
bucket holds up to ``burst`` tokens, refills at ``rate`` tokens a second, and a request
takes one. A denied request learns how long until a token is back (``retry_after``,
the HTTP Retry-After). In Redis the whole update is one Lua script timed by the Redis
server's own clock, so workers and replicas share each bucket; a worker takes tokens
in small leases (:class:`RedisRateLimiter`) so that most requests need no round trip.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

    from reco.config import Settings

log = logging.getLogger(__name__)

# Seconds a Redis call on the request path may take before it counts as failed.
REDIS_TIMEOUT_S = 1.0
# After a failure, Redis is left alone this long: requests do not each wait on a dead server.
REDIS_PAUSE_S = 1.0
# At most one warning this often while Redis keeps failing.
_WARN_EVERY_S = 10.0
# Redis limiter leases: tokens a worker takes at once are the rate of this many seconds
# (at most MAX_LEASE); held tokens unused this long are dropped.
LEASE_SECONDS = 0.05
MAX_LEASE = 64
LEASE_TTL_S = 1.0


@dataclass(frozen=True)
class Decision:
    """The answer for one request: let it in or not, when to retry, tokens left."""

    allowed: bool
    retry_after: float
    remaining: int


class RateLimiter(Protocol):
    """Takes one token from a key's bucket, if there is one."""

    def acquire(self, key: str) -> Decision:
        """Decide on one request made with ``key``."""
        ...

    def acquire_local(self, key: str) -> Decision | None:
        """Decide without waiting on I/O, or None when only :meth:`acquire` can."""
        ...


def _check(rate: float, burst: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if int(burst) != burst or burst < 1:
        raise ValueError(f"burst must be a whole number of requests, at least 1, got {burst!r}")


class MemoryRateLimiter:
    """Token buckets in this process, safe to share between threads.

    Buckets left idle long enough to be full again are forgotten (a missing bucket is a
    full one), so memory follows the keys active in the last ``burst / rate`` seconds.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _check(rate, burst)
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, time of last update), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._refill_s = self.burst / self.rate

    def acquire(self, key: str) -> Decision:
        """Take a token from ``key``'s bucket if one is there."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
            self._forget_full(now)
        if allowed:
            return Decision(True, 0.0, int(tokens))
        return Decision(False, (1 - tokens) / self.rate, 0)

    def acquire_local(self, key: str) -> Decision:
        """The same as :meth:`acquire`: the buckets are in memory."""
        return self.acquire(key)

    def _forget_full(self, now: float) -> None:
        while self._buckets:
            key, (_tokens, last) = next(iter(self._buckets.items()))
            if now - last < self._refill_s:
                return
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, tokens wanted. Takes as many of the
# wanted tokens as the bucket holds (none when it holds less than one). Returns {granted,
# retry_after, remaining} with retry_after as text: Redis would truncate a Lua number.
_TOKEN_BUCKET_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local granted = math.min(wanted, math.floor(tokens))
local retry_after = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  retry_after = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, string.format('%.17g', retry_after), math.floor(tokens)}
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every worker and replica using the same server.

    An atomic script timed by Redis ``TIME`` (no clock skew between hosts) takes the
    tokens; a bucket expires once idle long enough to be full again. When Redis cannot
    be reached requests are let in and a warning logged: an outage of the limiter
    should not take the service down with it. Build the client with
    :func:`redis_from_url` so a dead server costs milliseconds, not seconds.

    Leases: a request that finds no token held here takes up to ``lease`` tokens at
    once (the rate of ``lease_seconds``, at least 1, at most ``MAX_LEASE``), and the
    next requests of that key in this process spend them without a round trip (a
    Redis call per request capped single events near 600/s on two cores). Nothing
    is admitted beyond what the shared bucket gave; tokens held here expire after
    ``LEASE_TTL_S`` unused, so a key spread over several workers may meet its 429 up to
    a lease early, never late. Keys with a rate under ``1 / lease_seconds`` lease one
    token: exact.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        burst: int,
        prefix: str = "reco:rl:",
        *,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        import redis

        _check(rate, burst)
        self.rate = float(rate)
        self.burst = int(burst)
        self.prefix = prefix
        self.lease = max(1, min(MAX_LEASE, self.burst, int(self.rate * lease_seconds)))
        self._redis_error = redis.RedisError
        self._script = client.register_script(_TOKEN_BUCKET_LUA)
        self._outage = RedisOutage("rate limiter")
        self._lock = threading.Lock()
        # key -> (tokens held here, when they expire, the bucket's tokens when leased),
        # in the order leases were taken: the order they expire in.
        self._leases: OrderedDict[str, tuple[int, float, int]] = OrderedDict()

    def acquire_local(self, key: str) -> Decision | None:
        """Spend a token this process holds for ``key``; None when it holds none."""
        if self.lease == 1:
            return None
        now = time.monotonic()
        with self._lock:
            held = self._leases.get(key)
            if held is None:
                return None
            tokens, expires, remaining = held
            if now > expires or tokens <= 1:
                del self._leases[key]
                if now > expires:
                    return None
            else:
                self._leases[key] = (tokens - 1, expires, remaining)  # keeps its place
        return Decision(True, 0.0, remaining + tokens - 1)

    def acquire(self, key: str) -> Decision:
        """Take a token for ``key``: a held one, else from the bucket in Redis."""
        local = self.acquire_local(key)
        if local is not None:
            return local
        if not self._outage.available():
            return _LET_IN
        try:
            granted, retry_after, remaining = self._script(
                keys=[self.prefix + key], args=[repr(self.rate), self.burst, self.lease]
            )
        except self._redis_error as exc:
            self._outage.failed(exc, "letting requests through unlimited")
            return _LET_IN
        granted, remaining = int(granted), int(remaining)
        if granted < 1:
            return Decision(False, float(retry_after), 0)
        if granted > 1:
            self._hold(key, granted - 1, remaining)
        return Decision(True, 0.0, remaining + granted - 1)

    def __len__(self) -> int:
        """Keys this process holds leased tokens for (expired ones not yet dropped)."""
        return len(self._leases)

    def _hold(self, key: str, tokens: int, remaining: int) -> None:
        now = time.monotonic()
        with self._lock:
            held, expires, _ = self._leases.pop(key, (0, 0.0, 0))
            if expires < now:
                held = 0  # an expired lease is not renewed by a new one
            self._leases[key] = (held + tokens, now + LEASE_TTL_S, remaining)  # the newest
            # Expired leases are at the front: memory follows the keys of the last second.
            while self._leases:
                _, (_, expires, _) = next(iter(self._leases.items()))
                if expires >= now:
                    break
                self._leases.popitem(last=False)


# The decision while Redis is down: fail open.
_LET_IN = Decision(True, 0.0, 0)


def redis_from_url(url: str) -> redis.Redis:
    """A Redis client for the request path: short timeouts and one immediate retry
    (enough to replace a pooled connection the server closed), never seconds of backoff."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )


class RedisOutage:
    """Tracks a Redis that fails: pauses calls to it for a moment, warns now and then.

    ``what`` names the user of Redis in the warning, logged on ``logger``; the warning
    carries the error's type and message only (redis-py's name host and port, never a
    password).
    """

    def __init__(
        self, what: str, *, logger: logging.Logger = log, pause: float = REDIS_PAUSE_S
    ) -> None:
        self.what = what
        self.logger = logger
        self.pause = pause
        self._until = -math.inf
        self._last_warning = -math.inf

    def available(self) -> bool:
        """False while paused after a failure."""
        return time.monotonic() >= self._until

    def failed(self, exc: Exception, consequence: str) -> None:
        """Note a failure: pause, and log a warning unless one was logged recently."""
        now = time.monotonic()
        self._until = now + self.pause
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            self.logger.warning(
                "%s: Redis unavailable (%s: %s); %s until it is back",
                self.what,
                type(exc).__name__,
                str(exc)[:200],
                consequence,
            )


def rate_limiter_for(settings: Settings) -> RateLimiter:
    """The limiter ``settings`` ask for: in Redis when ``redis_url`` is set, else in memory."""
    rate = settings.service.rate_limit_per_second
    burst = settings.service.rate_limit_burst
    if settings.redis_url:
        return RedisRateLimiter(redis_from_url(settings.redis_url), rate, burst)
    return MemoryRateLimiter(rate, burst)
