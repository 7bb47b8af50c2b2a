"""Online features in Redis, shared by every service worker and stream processor.

Keys, all under one prefix (``EventsConfig.key_prefix``):

* ``h:<user>``  list of the user's recent events (JSON), oldest first, trimmed;
* ``d:<user>``  set of items the user disliked;
* ``count``     hash item -> all-time events;
* ``trend``     sorted set item -> log2 trending score (see :mod:`reco.features.decay`),
  so the ranking is a ZRANGE and the decayed count at any time one ``pow``;
* ``seg:<segment>``  hash item -> positive events within that segment;
* ``events``    how many events were applied; ``applied_through`` the high-water mark.

Every batch is applied by one Lua script, atomically. How an event is applied at most
once depends on where it comes from:

* from a Redis stream (``ack=``): the script XACKs each entry and applies it only when
  XACK answers 1, i.e. when this very call moved it out of the group's pending list.
  Acknowledging and applying are one atomic step, so a consumer that dies before the
  script leaves the entry pending (another claims it and applies it) and one that dies
  after leaves it applied and acknowledged; a slow consumer whose entry was claimed by
  another finds it already acknowledged and applies nothing. No per-event marker to
  expire, no ordering assumption: consumers may run batches in any order.
* otherwise: a high-water mark, as in memory (ascending ids from one ordered source).

Redis persists the stream, the group's pending list and these keys together, so a
restart from an older snapshot rolls all of them back to the same moment; the relay
then republishes what the stream lost (:mod:`reco.events.relay`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

from reco.features.base import EventUpdate, HistoryEntry
from reco.features.decay import decayed_count, event_exponent, half_life_seconds

# Everything per event the script needs, then the segments: id, entry id, user, item,
# history JSON, trending exponent ("" when it does not count), dislike flag, #segments.
_FIELDS_PER_EVENT = 8

# `#!lua` (no flags): Redis refuses the whole script up front when out of memory,
# instead of failing half-way through a batch.
_APPLY = """#!lua
local prefix, mode, stream, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local history_length, ttl_ms, n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ln2 = math.log(2)
local mark_key = prefix .. 'applied_through'
local mark = tonumber(redis.call('GET', mark_key) or '0')
local applied = 0
local i = 8
for _ = 1, n do
  local id, entry, user, item = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local history, exponent, dislike = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local n_segments = tonumber(ARGV[i + 7])
  local fresh
  if mode == 'ack' then
    fresh = redis.call('XACK', stream, group, entry) == 1
  else
    fresh = id > mark
  end
  if fresh then
    if id > mark then mark = id end
    local history_key = prefix .. 'h:' .. user
    redis.call('RPUSH', history_key, history)
    redis.call('LTRIM', history_key, -history_length, -1)
    if ttl_ms > 0 then redis.call('PEXPIRE', history_key, ttl_ms) end
    redis.call('HINCRBY', prefix .. 'count', item, 1)
    if exponent ~= '' then
      local e = tonumber(exponent)
      local old = redis.call('ZSCORE', prefix .. 'trend', item)
      local score = e
      if old then
        old = tonumber(old)
        local top = math.max(old, e)
        score = top + math.log(2 ^ (old - top) + 2 ^ (e - top)) / ln2
      end
      redis.call('ZADD', prefix .. 'trend', score, item)
      for s = 1, n_segments do
        redis.call('HINCRBY', prefix .. 'seg:' .. ARGV[i + 7 + s], item, 1)
      end
    end
    if dislike == '1' then redis.call('SADD', prefix .. 'd:' .. user, item) end
    applied = applied + 1
  end
  i = i + 8 + n_segments
end
if applied > 0 then
  redis.call('INCRBY', prefix .. 'events', applied)
  redis.call('SET', mark_key, mark)
end
return applied
"""


@dataclass(frozen=True)
class StreamAck:
    """Where the events of an ``apply`` came from: acknowledge them there, atomically.

    Entry ids are ``<event id>-0`` (the relay publishes each event under its own id).
    """

    stream: str
    group: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisOnlineFeatures:
    """Online features in Redis (see :class:`reco.features.base.OnlineFeatures`).

    ``client`` is a ``redis.Redis`` (bytes or decoded responses); ``prefix`` starts
    every key; ``history_ttl_days`` forgets a user's recent history after that long
    without events (None: never).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "reco:online:",
        history_length: int = 200,
        half_life_days: float = 7.0,
        history_ttl_days: float | None = None,
    ) -> None:
        if history_length < 1:
            raise ValueError(f"history_length must be at least 1, got {history_length}")
        self.client = client
        self.prefix = prefix
        self.history_length = history_length
        self.half_life = half_life_seconds(half_life_days)
        self.history_ttl_ms = int(history_ttl_days * 86_400_000) if history_ttl_days else 0
        self._script = client.register_script(_APPLY)

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisOnlineFeatures:
        """Features in the Redis at ``url``; ``options`` as for the constructor."""
        return cls(redis.Redis.from_url(url, decode_responses=True), **options)  # type: ignore[arg-type]

    # -- writing ---------------------------------------------------------------------

    def apply(self, updates: Sequence[EventUpdate], *, ack: StreamAck | None = None) -> int:
        """Apply a batch atomically; return how many events were new.

        With ``ack``, each event is applied exactly when this call acknowledges its
        stream entry; without, when its id is above the high-water mark.
        """
        if not updates:
            return 0
        ordered = sorted(updates, key=lambda u: u.event_id)
        args: list[str | int] = [
            self.prefix,
            "ack" if ack else "mark",
            ack.stream if ack else "",
            ack.group if ack else "",
            self.history_length,
            self.history_ttl_ms,
            len(ordered),
        ]
        for update in ordered:
            history = json.dumps(
                [update.event_id, update.item, update.timestamp, update.event_type, update.weight],
                ensure_ascii=False,
                separators=(",", ":"),
            )
            exponent = (
                repr(event_exponent(update.timestamp, self.half_life))
                if update.counts_as_popular
                else ""
            )
            args += [
                update.event_id,
                f"{update.event_id}-0",
                update.user,
                update.item,
                history,
                exponent,
                "1" if update.is_dislike else "0",
                len(update.segments),
                *update.segments,
            ]
        return int(self._script(args=args))

    def clear(self) -> None:
        """Delete every key under the prefix."""
        pattern = _glob_escape(self.prefix) + "*"
        batch: list[str] = []
        for key in self.client.scan_iter(match=pattern, count=1_000):
            batch.append(key)
            if len(batch) >= 1_000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    # -- reading ---------------------------------------------------------------------

    def recent_history(self, user_ids: Sequence[str]) -> list[list[HistoryEntry]]:
        """Each user's recent events, oldest first (one round trip for all users)."""
        pipe = self.client.pipeline(transaction=False)
        for user in user_ids:
            pipe.lrange(self.prefix + "h:" + user, 0, -1)
        out = []
        for raw in pipe.execute():
            entries = []
            for text in raw:
                event_id, item, stamp, event_type, weight = json.loads(text)
                entries.append(HistoryEntry(int(event_id), item, stamp, event_type, weight))
            out.append(entries)
        return out

    def trending_scores(self, items: Sequence[str], *, now: float | None = None) -> np.ndarray:
        """Decayed counts of ``items`` at ``now`` (default: the current time)."""
        if not items:
            return np.zeros(0)
        at = time.time() if now is None else now
        scores = self.client.zmscore(self.prefix + "trend", list(items))
        return np.array(
            [0.0 if s is None else decayed_count(float(s), at, self.half_life) for s in scores],
            dtype=np.float64,
        )

    def top_trending(self, n: int, *, now: float | None = None) -> list[tuple[str, float]]:
        """The ``n`` most trending items with their decayed counts, best first."""
        if n < 1:
            return []
        at = time.time() if now is None else now
        pairs = self.client.zrange(self.prefix + "trend", 0, n - 1, desc=True, withscores=True)
        return [(_text(item), decayed_count(float(s), at, self.half_life)) for item, s in pairs]

    def item_counts(self, items: Sequence[str]) -> np.ndarray:
        """All-time event counts of ``items``."""
        if not items:
            return np.zeros(0, dtype=np.int64)
        counts = self.client.hmget(self.prefix + "count", list(items))
        return np.array([int(c) if c is not None else 0 for c in counts], dtype=np.int64)

    def segment_counts(self, segment: str) -> dict[str, int]:
        """Positive events per item within ``segment``."""
        raw = self.client.hgetall(self.prefix + "seg:" + segment)
        return {_text(item): int(count) for item, count in raw.items()}

    def dislikes(self, user: str) -> set[str]:
        """Items ``user`` disliked."""
        return {_text(item) for item in self.client.smembers(self.prefix + "d:" + user)}

    def events_applied(self) -> int:
        """Distinct events applied (all processes together)."""
        return int(self.client.get(self.prefix + "events") or 0)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, for a literal SCAN prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
