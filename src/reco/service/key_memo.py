"""A worker's short memory of verified API keys, so a busy key costs no store query
per request.

A key verified less than ``ttl`` seconds ago is taken as still valid: revoking a key
(``reco keys revoke``) takes effect within ``ttl`` (one second by default) in every
worker. Only successes are remembered, so a key created a moment ago works at once.
Entries are keyed by a SHA-256 of the secret: the memo never holds a secret.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from reco.service.keys import ApiKey

KEY_MEMO_SECONDS = 1.0
_MAX_ENTRIES = 10_000


class KeyMemo:
    """Verified keys by secret digest, each for ``ttl`` seconds."""

    def __init__(self, ttl: float = KEY_MEMO_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, ApiKey]] = {}

    def verify(self, secret: str, verify: Callable[[str], ApiKey | None]) -> ApiKey | None:
        """The key for ``secret``: remembered, or from ``verify`` (the store)."""
        digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1]
        key = verify(secret)
        with self._lock:
            if key is None:
                self._entries.pop(digest, None)
            else:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = (now, key)
        return key
