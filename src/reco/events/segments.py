"""Segments: the groups of users (``device=mobile``, ``country=DE``) counted online.

A user's segments come from their stored attributes (``PUT /v1/users/{id}``); a
request's from its context (query parameters such as ``device``). Both are labelled
``<attribute>=<value>`` for the configured attributes, so the service asks
:meth:`OnlineFeatures.segment_counts` with :func:`context_segments` of a request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, select

from reco.store.tables import users

_USERS_PER_QUERY = 500
_ATTRIBUTES = select(users.c.user_id, users.c.attributes).where(
    users.c.user_id.in_(bindparam("ids", expanding=True)), users.c.deleted_at.is_(None)
)


def segment_label(attribute: str, value: Any) -> str | None:
    """``"<attribute>=<value>"``, or None when the value is missing, blank or not a
    plain value (lists and objects do not make segments). Whole floats read as
    integers, so ``3`` and ``3.0`` (JSON round trips) are one segment."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    return f"{attribute}={text}" if text else None


def context_segments(context: Mapping[str, Any], attributes: Sequence[str]) -> list[str]:
    """The segment labels of a context (user attributes or request parameters)."""
    labels = []
    for attribute in attributes:
        label = segment_label(attribute, context.get(attribute))
        if label is not None:
            labels.append(label)
    return labels


class SegmentResolver:
    """Users' segments from their stored attributes, cached for ``ttl_seconds``.

    One query per batch of events for the users not cached; attributes change rarely,
    and a change reaches the counts within the TTL.
    """

    def __init__(
        self,
        engine: Engine,
        attributes: Sequence[str],
        *,
        ttl_seconds: float = 60.0,
        max_users: int = 100_000,
    ) -> None:
        self.engine = engine
        self.attributes = list(attributes)
        self.ttl_seconds = ttl_seconds
        self.max_users = max_users
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def segments(self, user_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Each user's segments (empty for users without stored attributes)."""
        wanted = list(dict.fromkeys(user_ids))
        if not self.attributes:
            return {user: () for user in wanted}
        now = time.monotonic()
        found: dict[str, tuple[str, ...]] = {}
        with self._lock:
            for user in wanted:
                cached = self._cache.get(user)
                if cached is not None and cached[0] > now:
                    found[user] = cached[1]
        missing = [user for user in wanted if user not in found]
        if missing:
            loaded = self._load(missing)
            with self._lock:
                if len(self._cache) + len(loaded) > self.max_users:
                    self._cache.clear()  # simpler than LRU; a refill costs one query a batch
                for user, labels in loaded.items():
                    self._cache[user] = (now + self.ttl_seconds, labels)
            found.update(loaded)
        return found

    def _load(self, user_ids: list[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {user: () for user in user_ids}
        with self.engine.connect() as connection:
            for start in range(0, len(user_ids), _USERS_PER_QUERY):
                chunk = user_ids[start : start + _USERS_PER_QUERY]
                for user, attributes in connection.execute(_ATTRIBUTES, {"ids": chunk}):
                    out[user] = tuple(context_segments(attributes or {}, self.attributes))
        return out
