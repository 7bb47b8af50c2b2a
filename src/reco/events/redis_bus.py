"""Redis Streams as the event bus: one stream, consumer groups, explicit entry ids.

Publishing. Each event is added under its own id (``XADD stream <event id>-0``). Redis
only accepts an entry id above the stream's last one, even after trimming, so:

* the stream is in event-id order whoever publishes, and a second copy of an event is
  refused (several relays may run; the losers of a race just get refusals);
* the stream's ``last-generated-id`` is the relay's durable offset, persisted by Redis
  together with the entries, the group's pending list and the online features: after
  a restart from an older snapshot all of them are at the same point, and the relay
  resumes from there. A stream that no longer exists (new server, or data lost) makes
  the relay rebuild from the store.

One script call publishes a whole batch (:data:`_PUBLISH`): one round trip, and an
entry a racing relay published first is skipped inside Redis instead of coming back
as one error reply per event.

Trimming. ``MAXLEN ~`` would drop the oldest entries even while a consumer group still
needs them (undelivered, or pending on a dead consumer), losing events. Instead the
relay trims with ``MINID ~`` below the oldest entry any group still needs (at most
once a second while it has room, since that takes a few round trips), and the publish
script adds entries only while the stream holds fewer than ``max_length``. The stream
stays bounded and what does not fit waits in the store.

Consuming. Processors of one group share the work (XREADGROUP ``>``); an entry idle
for ``claim_idle_ms`` on its consumer (which died) is claimed with XAUTOCLAIM by
another. Entries are acknowledged by the features' apply script, atomically with
their effect (:mod:`reco.features.redis_features`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reco.events.bus import BusUnavailable
from reco.events.event import Event

log = logging.getLogger(__name__)

# A consumer with nothing pending and idle this long (ms) is forgotten.
_FORGET_CONSUMER_IDLE_MS = 3_600_000
# Seconds the relay trusts its own count of the room left before trimming and asking
# the stream's length again.
_ROOM_CHECK_SECONDS = 1.0

# Publish a batch: ARGV = max length, then (entry id, payload) pairs in ascending id
# order. Adds entries while the stream is below its bound; an id at or below the
# stream's last one (published before, by this relay or another) is skipped. Returns
# how many were added. `#!lua` (no flags): refused up front when Redis is out of
# memory, never half-way through a batch.
_PUBLISH = """#!lua
local stream = KEYS[1]
local room = tonumber(ARGV[1]) - redis.call('XLEN', stream)
local added = 0
for k = 2, #ARGV, 2 do
  if added >= room then break end
  local reply = redis.pcall('XADD', stream, ARGV[k], 'e', ARGV[k + 1])
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'equal or smaller', 1, true) then
      return redis.error_reply(reply.err)
    end
  else
    added = added + 1
  end
end
return added
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_number(entry_id: Any) -> int:
    """The event id of a stream entry id ``"<n>-<seq>"``."""
    return int(_text(entry_id).partition("-")[0])


def _next_id(entry_id: Any) -> str:
    """The smallest stream id after ``entry_id``."""
    number, _, sequence = _text(entry_id).partition("-")
    return f"{number}-{int(sequence or 0) + 1}"


@contextmanager
def _reachable(url_hint: str) -> Iterator[None]:
    """Turn connection failures into BusUnavailable naming the server."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise BusUnavailable(
            f"Redis at {url_hint} is unreachable ({exc}); events stay in the store and "
            "are published once it is back."
        ) from exc


class RedisStreamsBus:
    """The Redis Streams bus (see :class:`reco.events.bus.EventBus`) and its consumer side.

    ``client`` is a ``redis.Redis``; ``stream`` and ``group`` name the stream and the
    processors' consumer group; ``max_length`` bounds the stream; ``claim_idle_ms`` is
    how long an entry stays with an unresponsive consumer before another claims it.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str,
        group: str,
        max_length: int = 100_000,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.max_length = max_length
        self.claim_idle_ms = claim_idle_ms
        kwargs = client.get_connection_kwargs()
        self._where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        # Whether this process has made sure the group exists (reset when the stream
        # turns out to be gone, e.g. after Redis lost its data).
        self._group_ready = False
        self._publish = client.register_script(_PUBLISH)
        # The room left as of the last check, less what was published since.
        self._room = 0
        self._room_checked = float("-inf")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStreamsBus:
        """The bus on the Redis at ``url``; ``options`` as for the constructor."""
        return cls(redis.Redis.from_url(url, decode_responses=True), **options)

    # -- the group -------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the stream and the consumer group (reading from the start) if absent."""
        with _reachable(self._where):
            try:
                self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    # -- publishing (the relay's side) -----------------------------------------------

    def position(self) -> int | None:
        """The stream's last event id; None when the stream is absent or never had one."""
        with _reachable(self._where):
            try:
                info = self.client.xinfo_stream(self.stream)
            except ResponseError as exc:
                if "no such key" in str(exc).lower():
                    self._group_ready = False
                    return None
                raise
        return _id_number(info["last-generated-id"]) or None

    def room(self) -> int:
        """How many entries may be added now: counted down from the last check, which
        is renewed (trimming what every group is done with, then asking the length)
        once a second or when the count runs out. Other relays' entries may make it
        too high for that second; the publish script holds the bound exactly."""
        now = time.monotonic()
        if self._room > 0 and now - self._room_checked < _ROOM_CHECK_SECONDS:
            return self._room
        with _reachable(self._where):
            if not self._group_ready:
                self.ensure_group()
            self.trim()
            length = int(self.client.xlen(self.stream))
            if length >= self.max_length:
                # `~` only drops whole internal nodes; when one node holds the whole
                # bound, trim exactly rather than stall the relay.
                self.trim(approximate=False)
                length = int(self.client.xlen(self.stream))
        self._room = max(0, self.max_length - length)
        self._room_checked = now
        return self._room

    def trim(self, *, approximate: bool = True) -> None:
        """Drop the entries below the oldest one any group still needs (``approximate``:
        only whole internal nodes, which is cheap)."""
        floors = []
        for group in self._groups():
            name = _text(group["name"])
            summary = self.client.xpending(self.stream, name)
            if summary["pending"]:
                floors.append(_text(summary["min"]))
            else:
                floors.append(_next_id(group["last-delivered-id"]))
        if floors:
            floor = min(floors, key=lambda i: tuple(int(p) for p in i.split("-")))
            self.client.xtrim(self.stream, minid=floor, approximate=approximate)

    def publish(self, events: Sequence[Event]) -> int:
        """Add each event under its own id, in one script call; return how many were
        new (ids at or below the stream's last one are skipped)."""
        if not events:
            return 0
        if not self._group_ready:
            self.ensure_group()  # before the first entry, so the group reads it
        arguments: list[str | int] = [self.max_length]
        for event in events:
            arguments += (event.entry_id, event.payload())
        with _reachable(self._where):
            added = int(self._publish(keys=[self.stream], args=arguments))
        self._room = max(0, self._room - added)
        return added

    # -- consuming (the processors' side) --------------------------------------------

    def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[Event]:
        """New entries for ``consumer`` (they become pending on it), waiting up to
        ``block_ms`` for the first."""
        reply = self.client.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        if isinstance(reply, dict):  # RESP3 clients get {stream: [entries]}
            reply = list(reply.items())
        return self._events(entry for _stream, entries in reply or [] for entry in entries)

    def claim(self, consumer: str, count: int) -> list[Event]:
        """Entries idle on other consumers for ``claim_idle_ms``, now pending on ``consumer``.

        Entries trimmed while pending cannot be processed any more; they are logged
        and acknowledged (with MINID trimming this does not happen).
        """
        reply = self.client.xautoclaim(
            self.stream, self.group, consumer, self.claim_idle_ms, start_id="0-0", count=count
        )
        entries = reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        if deleted:
            log.error(
                "events %s were trimmed from %s before group %s processed them; they are "
                "lost to the online features until a rebuild",
                [_text(d) for d in deleted],
                self.stream,
                self.group,
            )
            self.client.xack(self.stream, self.group, *deleted)
        return self._events(entries)

    def _events(self, entries: Any) -> list[Event]:
        events = []
        for entry_id, fields in entries:
            if fields is None:
                continue
            try:
                events.append(Event.from_entry(entry_id, fields))
            except ValueError as exc:
                # Not ours and never will be: acknowledge so it does not block the group.
                log.error("skipping entry of %s: %s", self.stream, exc)
                self.client.xack(self.stream, self.group, entry_id)
        return events

    def _groups(self) -> list[dict[str, Any]]:
        """XINFO GROUPS of the stream; empty when the stream does not exist (yet)."""
        try:
            return self.client.xinfo_groups(self.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise

    def processed_through(self) -> int:
        """The largest event id such that the group has processed every event up to it.

        One round trip (every answer of the service asks): the groups and the oldest
        pending entry together.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, self.group)
        groups, summary = pipe.execute(raise_on_error=False)
        if isinstance(groups, ResponseError) and "no such key" in str(groups).lower():
            return 0  # no stream (yet, or lost with the server's data)
        if isinstance(groups, Exception):
            raise groups
        group = {_text(g["name"]): g for g in groups}.get(self.group)
        if group is None:
            return 0
        if isinstance(summary, Exception):
            raise summary
        if summary["pending"]:
            return _id_number(summary["min"]) - 1
        return _id_number(group["last-delivered-id"])

    def backlog(self) -> int:
        """Entries the group has not finished: pending plus not yet delivered."""
        for group in self._groups():
            if _text(group["name"]) == self.group:
                lag = group.get("lag")
                if lag is None:  # Redis cannot tell (after deletions): count them
                    lag = len(
                        self.client.xrange(self.stream, min=_next_id(group["last-delivered-id"]))
                    )
                return int(group["pending"]) + int(lag)
        return 0

    def forget_idle_consumers(self, keep: str) -> int:
        """Remove consumers (other than ``keep``) with nothing pending and idle an hour."""
        removed = 0
        for info in self.client.xinfo_consumers(self.stream, self.group):
            name = _text(info["name"])
            if name != keep and not info["pending"] and info["idle"] > _FORGET_CONSUMER_IDLE_MS:
                self.client.xgroup_delconsumer(self.stream, self.group, name)
                removed += 1
        return removed

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
