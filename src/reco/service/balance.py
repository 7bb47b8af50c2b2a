"""Keep-alive connections spread evenly over the workers of one ``reco serve``.

uvicorn's workers share one listening socket, and a worker that wakes first accepts
every connection waiting: 16 connections opened at once were seen split 13 to 3, or
all to one worker, for as long as they lived. The overloaded worker then queues
requests while the other idles, and latency depends on a race at connect time.

Each worker counts its *active* connections (a client address that sent a request
within the last ``window`` seconds) in a shared file, one slot per worker. A worker
holding at least ``margin`` more than the least loaded live worker answers one
request with ``Connection: close`` (at most once per ``close_every`` seconds); the
client reconnects, and the accept most likely goes to a worker that is not busy.
Idle keep-alive connections are not counted, so they are never closed for balance.

``reco serve`` creates the folder (``BALANCE_DIR_ENV``) when it starts more than one
worker; a worker claims the first slot whose lock file it can ``flock``, so a
restarted worker takes the slot its predecessor left. Everything but the shared file
happens on the worker's event loop (the middleware and :meth:`keep_fresh`).
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import time
from pathlib import Path

BALANCE_DIR_ENV = "RECO_SERVE_BALANCE_DIR"
# Per slot: active connections (int64) and when they were counted (float64, epoch s).
_SLOT = struct.Struct("<qd")
SLOTS_FILE = "slots"
WINDOW_SECONDS = 1.0
CLOSE_EVERY_SECONDS = 0.2
MARGIN = 2
# A slot not written for this long belongs to a worker that is gone or idle.
STALE_SECONDS = 2.0


class ConnectionBalance:
    """One worker's view of how many active connections every worker holds."""

    def __init__(
        self,
        folder: Path,
        workers: int,
        *,
        window: float = WINDOW_SECONDS,
        close_every: float = CLOSE_EVERY_SECONDS,
        margin: int = MARGIN,
    ) -> None:
        if workers < 2:
            raise ValueError(f"balancing needs at least 2 workers, got {workers}")
        self.workers = workers
        self.window = window
        self.close_every = close_every
        self.margin = margin
        self.folder = Path(folder)
        self.slot = -1
        self._slots: mmap.mmap | None = None
        self._lock = -1
        self._seen: dict[object, float] = {}
        self._last_close = 0.0
        self._last_prune = 0.0

    def open(self) -> ConnectionBalance:
        """Claim a slot in the shared file (the worker's start-up); returns ``self``."""
        self._lock, self.slot = _claim_slot(self.folder, self.workers)
        size = _SLOT.size * self.workers
        with (self.folder / SLOTS_FILE).open("a+b") as handle:
            if os.fstat(handle.fileno()).st_size < size:
                handle.truncate(size)
            self._slots = mmap.mmap(handle.fileno(), size)
        return self

    def should_close(self, client: object, now: float | None = None) -> bool:
        """Note a request from ``client`` (its address); True when this worker should
        close that connection after answering, to hand it to a less loaded worker.
        Always False before :meth:`open` (requests during start-up)."""
        if self._slots is None:
            return False
        now = time.time() if now is None else now
        self._seen[client] = now
        if now - self._last_prune >= self.window / 4:
            self._prune(now)
        mine = len(self._seen)
        self._write(mine, now)
        if mine < self.margin or now - self._last_close < self.close_every:
            return False
        least = min(self._live_counts(now), default=None)
        if least is None or mine - least < self.margin:
            return False
        self._last_close = now
        del self._seen[client]
        self._write(len(self._seen), now)
        return True

    def refresh(self, now: float | None = None) -> None:
        """Drop connections that went quiet and publish the count; run it a few times
        a window so that an idle worker's slot stays live (and shows its zero)."""
        self._prune(time.time() if now is None else now)

    async def keep_fresh(self) -> None:
        """:meth:`refresh` forever, on the event loop that serves the requests."""
        while True:
            self.refresh()
            await asyncio.sleep(self.window / 4)

    def close(self) -> None:
        """Give the slot back (the lock goes with the process anyway)."""
        if self._slots is None:
            return
        self._write(0, 0.0)
        self._slots.close()
        self._slots = None
        os.close(self._lock)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        self._seen = {client: seen for client, seen in self._seen.items() if seen >= cutoff}
        self._last_prune = now
        self._write(len(self._seen), now)

    def _write(self, count: int, now: float) -> None:
        if self._slots is not None:
            _SLOT.pack_into(self._slots, self.slot * _SLOT.size, count, now)

    def _live_counts(self, now: float) -> list[int]:
        """Active connections of the other workers that wrote their slot recently."""
        counts = []
        for slot in range(self.workers):
            if slot == self.slot:
                continue
            count, written = _SLOT.unpack_from(self._slots, slot * _SLOT.size)
            if now - written <= STALE_SECONDS:
                counts.append(count)
        return counts


def _claim_slot(folder: Path, workers: int) -> tuple[int, int]:
    """The lock file descriptor and index of the first free slot."""
    for slot in range(workers):
        fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, slot
    raise RuntimeError(f"every one of the {workers} worker slots in {folder} is taken")


def balance_for(workers: int) -> ConnectionBalance | None:
    """This worker's balance when ``reco serve`` started several workers (its folder in
    ``BALANCE_DIR_ENV``), else None; not opened yet."""
    folder = os.environ.get(BALANCE_DIR_ENV)
    if not folder or workers < 2:
        return None
    return ConnectionBalance(Path(folder), workers)
