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

# The batch travels as ONE JSON argument, a list of [event id, user, item, history
# entry (JSON), trending exponent ("" when it does not count), dislike (0/1),
# [segments]]: packing thousands of separate arguments costs more in redis-py than
# the whole script costs in Redis. Numbers travel as text: tonumber() parses the
# shortest round-trip repr exactly, so the floats match the memory backend's.
#
# The script first decides which events are new, then applies them grouped by key
# (one RPUSH per user, one HMGET/HSET per hash, one ZMSCORE/ZADD for trending): a
# few calls per batch instead of eight per event. Each item's trending score still
# takes its events one by one in id order, the same float operations as in memory.
#
# `#!lua` (no flags): Redis refuses the whole script up front when out of memory,
# instead of failing half-way through a batch.
_APPLY = """#!lua
local prefix, mode, stream, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local history_length, ttl_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local batch = cjson.decode(ARGV[7])
local CHUNK = 1000  -- even, so field/value pairs never straddle two calls
local ln2 = math.log(2)

local function each_chunk(values, call)
  for first = 1, #values, CHUNK do
    call(unpack(values, first, math.min(first + CHUNK - 1, #values)))
  end
end

local function append(map, order, key, value)
  local list = map[key]
  if list == nil then
    list = {}
    map[key] = list
    order[#order + 1] = key
  end
  list[#list + 1] = value
end

-- Which events are new. From a stream: those still pending in the group, acknowledged
-- here (an entry acknowledged before, by anyone, was applied then).
local mark_key = prefix .. 'applied_through'
local mark = tonumber(redis.call('GET', mark_key) or '0')
local fresh = {}
local n = #batch
if mode == 'ack' and n > 0 then
  local low, high = tonumber(batch[1][1]), tonumber(batch[n][1])
  local span = high - low + 1
  local acks = {}
  if span <= 4 * n then
    local pending = {}
    local range = redis.call('XPENDING', stream, group, low .. '-0', high .. '-0', span)
    for _, entry in ipairs(range) do pending[entry[1]] = true end
    for _, event in ipairs(batch) do
      local entry = event[1] .. '-0'
      if pending[entry] then
        pending[entry] = nil  -- a second copy in the same batch is not new
        fresh[#fresh + 1] = event
        acks[#acks + 1] = entry
      end
    end
    each_chunk(acks, function(...) redis.call('XACK', stream, group, ...) end)
  else  -- ids too sparse for one range query (old claimed entries): one by one
    for _, event in ipairs(batch) do
      if redis.call('XACK', stream, group, event[1] .. '-0') == 1 then
        fresh[#fresh + 1] = event
      end
    end
  end
else
  for _, event in ipairs(batch) do
    if tonumber(event[1]) > mark then
      fresh[#fresh + 1] = event
      mark = tonumber(event[1])
    end
  end
end

-- Group the new events by key, in id order.
local histories, users = {}, {}
local counts, items = {}, {}
local exponents, trending = {}, {}
local segments, segment_names = {}, {}
local dislikes, dislikers = {}, {}
for _, event in ipairs(fresh) do
  local id, user, item = tonumber(event[1]), event[2], event[3]
  if id > mark then mark = id end
  append(histories, users, user, event[4])
  if counts[item] == nil then
    counts[item] = 0
    items[#items + 1] = item
  end
  counts[item] = counts[item] + 1
  if event[5] ~= '' then
    append(exponents, trending, item, tonumber(event[5]))
    for _, segment in ipairs(event[7]) do
      local per_item = segments[segment]
      if per_item == nil then
        per_item = {map = {}, order = {}}
        segments[segment] = per_item
        segment_names[#segment_names + 1] = segment
      end
      if per_item.map[item] == nil then
        per_item.map[item] = 0
        per_item.order[#per_item.order + 1] = item
      end
      per_item.map[item] = per_item.map[item] + 1
    end
  end
  if event[6] == 1 then append(dislikes, dislikers, user, item) end
end

-- Add counts to a hash: one HMGET and one HSET per chunk of fields.
local function add_counts(key, order, map)
  for first = 1, #order, CHUNK / 2 do
    local fields = {unpack(order, first, math.min(first + CHUNK / 2 - 1, #order))}
    local old = redis.call('HMGET', key, unpack(fields))
    local pairs_ = {}
    for k, field in ipairs(fields) do
      pairs_[#pairs_ + 1] = field
      pairs_[#pairs_ + 1] = (tonumber(old[k]) or 0) + map[field]
    end
    redis.call('HSET', key, unpack(pairs_))
  end
end

for _, user in ipairs(users) do
  local key = prefix .. 'h:' .. user
  local length = 0
  each_chunk(histories[user], function(...) length = redis.call('RPUSH', key, ...) end)
  if length > history_length then redis.call('LTRIM', key, -history_length, -1) end
  if ttl_ms > 0 then redis.call('PEXPIRE', key, ttl_ms) end
end
add_counts(prefix .. 'count', items, counts)
for first = 1, #trending, CHUNK / 2 do
  local chunk = {unpack(trending, first, math.min(first + CHUNK / 2 - 1, #trending))}
  local old = redis.call('ZMSCORE', prefix .. 'trend', unpack(chunk))
  local scored = {}
  for k, item in ipairs(chunk) do
    local score = old[k] and tonumber(old[k]) or nil
    for _, e in ipairs(exponents[item]) do
      if score == nil then
        score = e
      else
        local top = math.max(score, e)
        score = top + math.log(2 ^ (score - top) + 2 ^ (e - top)) / ln2
      end
    end
    scored[#scored + 1] = score
    scored[#scored + 1] = item
  end
  redis.call('ZADD', prefix .. 'trend', unpack(scored))
end
for _, segment in ipairs(segment_names) do
  add_counts(prefix .. 'seg:' .. segment, segments[segment].order, segments[segment].map)
end
for _, user in ipairs(dislikers) do
  local key = prefix .. 'd:' .. user
  each_chunk(dislikes[user], function(...) redis.call('SADD', key, ...) end)
end
if #fresh > 0 then
  redis.call('INCRBY', prefix .. 'events', #fresh)
  redis.call('SET', mark_key, mark)
end
return #fresh
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
        batch = [
            [
                str(update.event_id),
                update.user,
                update.item,
                json.dumps(
                    [
                        update.event_id,
                        update.item,
                        update.timestamp,
                        update.event_type,
                        update.weight,
                    ],
                    ensure_ascii=False,
                    separators=(",", ":"),
                ),
                repr(event_exponent(update.timestamp, self.half_life))
                if update.counts_as_popular
                else "",
                1 if update.is_dislike else 0,
                list(update.segments),
            ]
            for update in ordered
        ]
        args = [
            self.prefix,
            "ack" if ack else "mark",
            ack.stream if ack else "",
            ack.group if ack else "",
            self.history_length,
            self.history_ttl_ms,
            json.dumps(batch, ensure_ascii=False, separators=(",", ":")),
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
