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

* from a Redis stream (``ack=``): the script applies a batch only if every one of its
  entries is still pending in the consumer group, and acknowledges them in the same
  atomic step. An entry acknowledged before (by this consumer or another one) was
  applied then; the script names such entries instead of applying anything, and the
  batch is sent again without them. So a consumer that dies before the script leaves
  its entries pending (another claims and applies them), one that dies after leaves
  them applied and acknowledged, and a slow consumer whose entries were claimed by
  another applies nothing twice. No per-event marker to expire, no ordering
  assumption: consumers may apply batches in any order.
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
from reco.features.decay import (
    decayed_count,
    decayed_counts,
    event_exponent,
    half_life_seconds,
)

# One JSON encoder for every call: json.dumps with options builds a new one each time.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# The batch travels as ONE JSON argument (packing thousands of separate arguments
# costs more in redis-py than the whole script costs in Redis), already grouped by key
# here: the script only checks freshness and then makes a few calls per key, since
# Lua in Redis's single thread is the part every worker shares. Numbers travel as
# text: tonumber() parses the shortest round-trip repr exactly, and each item's
# trending score takes its events one by one in id order, so the floats are the
# memory backend's to the last bit.
#
# `#!lua` (no flags): Redis refuses the whole script up front when out of memory,
# instead of failing half-way through a batch.
_APPLY = """#!lua
local prefix, mode, stream, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local history_length, ttl_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local plan = cjson.decode(ARGV[7])
local CHUNK = 1000  -- even, so field/value pairs never straddle two calls
local ln2 = math.log(2)
local ids = plan.ids
local n = #ids

local function each_chunk(values, call)
  for first = 1, #values, CHUNK do
    call(unpack(values, first, math.min(first + CHUNK - 1, #values)))
  end
end

-- 1. Every event must be new, or nothing is done and the stale ones are named.
local mark_key = prefix .. 'applied_through'
local mark = tonumber(redis.call('GET', mark_key) or '0')
local stale = {}
if mode == 'ack' then
  local low, high = tonumber(ids[1]), tonumber(ids[n])
  local span = high - low + 1
  local pending = {}
  if span <= 4 * n then
    local range = redis.call('XPENDING', stream, group, low .. '-0', high .. '-0', span)
    for _, entry in ipairs(range) do pending[entry[1]] = true end
  else  -- ids too sparse for one range query (old claimed entries): one by one
    for _, id in ipairs(ids) do
      local entry = id .. '-0'
      if #redis.call('XPENDING', stream, group, entry, entry, 1) > 0 then
        pending[entry] = true
      end
    end
  end
  for _, id in ipairs(ids) do
    if not pending[id .. '-0'] then stale[#stale + 1] = id end
  end
else
  for _, id in ipairs(ids) do
    if tonumber(id) <= mark then stale[#stale + 1] = id end
  end
end
if #stale > 0 then return stale end

-- 2. Acknowledge and apply, atomically with the check above.
if mode == 'ack' then
  local entries = {}
  for k, id in ipairs(ids) do entries[k] = id .. '-0' end
  each_chunk(entries, function(...) redis.call('XACK', stream, group, ...) end)
end

local function add_counts(key, counted)  -- counted: {{field, n}, ...}
  for first = 1, #counted, CHUNK / 2 do
    local last = math.min(first + CHUNK / 2 - 1, #counted)
    local fields = {}
    for k = first, last do fields[#fields + 1] = counted[k][1] end
    local old = redis.call('HMGET', key, unpack(fields))
    local values = {}
    for k = first, last do
      values[#values + 1] = counted[k][1]
      values[#values + 1] = (tonumber(old[k - first + 1]) or 0) + counted[k][2]
    end
    redis.call('HSET', key, unpack(values))
  end
end

for _, user_entries in ipairs(plan.h) do
  local key = prefix .. 'h:' .. user_entries[1]
  local length = 0
  each_chunk(user_entries[2], function(...) length = redis.call('RPUSH', key, ...) end)
  if length > history_length then redis.call('LTRIM', key, -history_length, -1) end
  if ttl_ms > 0 then redis.call('PEXPIRE', key, ttl_ms) end
end
add_counts(prefix .. 'count', plan.c)
local trend = plan.t
for first = 1, #trend, CHUNK / 2 do
  local last = math.min(first + CHUNK / 2 - 1, #trend)
  local items = {}
  for k = first, last do items[#items + 1] = trend[k][1] end
  local old = redis.call('ZMSCORE', prefix .. 'trend', unpack(items))
  local scored = {}
  for k = first, last do
    local previous = old[k - first + 1]
    local score = previous and tonumber(previous) or nil
    for _, text in ipairs(trend[k][2]) do
      local e = tonumber(text)
      if score == nil then
        score = e
      else
        local top = math.max(score, e)
        score = top + math.log(2 ^ (score - top) + 2 ^ (e - top)) / ln2
      end
    end
    scored[#scored + 1] = score
    scored[#scored + 1] = trend[k][1]
  end
  redis.call('ZADD', prefix .. 'trend', unpack(scored))
end
for _, segment in ipairs(plan.s) do
  add_counts(prefix .. 'seg:' .. segment[1], segment[2])
end
for _, user_items in ipairs(plan.d) do
  local key = prefix .. 'd:' .. user_items[1]
  each_chunk(user_items[2], function(...) redis.call('SADD', key, ...) end)
end
redis.call('INCRBY', prefix .. 'events', n)
local top_id = tonumber(ids[n])
if top_id > mark then redis.call('SET', mark_key, top_id) end
return n
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

        With ``ack``, the events whose stream entries are still pending are applied and
        acknowledged; without, those above the high-water mark. A repeated id within
        the batch counts once.
        """
        fresh = list({u.event_id: u for u in reversed(updates)}.values())
        fresh.sort(key=lambda u: u.event_id)
        head = [
            self.prefix,
            "ack" if ack else "mark",
            ack.stream if ack else "",
            ack.group if ack else "",
            self.history_length,
            self.history_ttl_ms,
        ]
        # The script refuses a batch holding any stale event and names those; retry
        # without them (each round drops at least one, so this ends).
        while fresh:
            answer = self._script(args=[*head, self._plan(fresh)])
            if not isinstance(answer, list):
                return int(answer)
            stale = {int(_text(i)) for i in answer}
            kept = [u for u in fresh if u.event_id not in stale]
            if len(kept) == len(fresh):  # cannot happen; never loop on it
                raise RuntimeError(f"the apply script named unknown stale events {answer[:5]}")
            fresh = kept
        return 0

    def _plan(self, updates: list[EventUpdate]) -> str:
        """The script's argument: ids, then each key's changes (JSON, grouped)."""
        histories: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        exponents: dict[str, list[str]] = {}
        segments: dict[str, dict[str, int]] = {}
        dislikes: dict[str, list[str]] = {}
        for update in updates:  # in id order: lists keep the events' order
            entry = [update.event_id, update.item, update.timestamp, update.event_type]
            histories.setdefault(update.user, []).append(_ENCODE([*entry, update.weight]))
            counts[update.item] = counts.get(update.item, 0) + 1
            if update.counts_as_popular:
                exponent = event_exponent(update.timestamp, self.half_life)
                exponents.setdefault(update.item, []).append(repr(exponent))
                for segment in update.segments:
                    per_item = segments.setdefault(segment, {})
                    per_item[update.item] = per_item.get(update.item, 0) + 1
            if update.is_dislike:
                dislikes.setdefault(update.user, []).append(update.item)
        plan = {
            "ids": [str(u.event_id) for u in updates],
            "h": list(histories.items()),
            "c": list(counts.items()),
            "t": list(exponents.items()),
            "s": [(segment, list(items.items())) for segment, items in segments.items()],
            "d": list(dislikes.items()),
        }
        return _ENCODE(plan)

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
        return decayed_counts([None if s is None else float(s) for s in scores], at, self.half_life)

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
