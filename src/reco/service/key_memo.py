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

from reco.service.keys import ApiKey

KEY_MEMO_SECONDS = 1.0
_MAX_ENTRIES = 10_000


class KeyMemo:
    """Verified keys by secret digest, each for ``ttl`` seconds."""

    def __init__(self, ttl: float = KEY_MEMO_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, ApiKey]] = {}

    def recall(self, secret: str) -> ApiKey | None:
        """The key verified for ``secret`` less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(_digest(secret))
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    def remember(self, secret: str, key: ApiKey | None) -> None:
        """Note the store's answer for ``secret`` (a None forgets it)."""
        digest = _digest(secret)
        with self._lock:
            if key is None:
                self._entries.pop(digest, None)
                return
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), key)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
