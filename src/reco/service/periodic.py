"""A daemon thread that calls a function every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicTask:
    """Call ``action`` every ``interval`` seconds on a daemon thread.

    An exception in ``action`` is logged and the next round runs as planned: a
    watcher that dies silently would leave a worker serving stale state forever.
    """

    def __init__(self, name: str, interval: float, action: Callable[[], object]) -> None:
        self.name = name
        self.interval = float(interval)
        self.action = action
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.action()
            except Exception:
                log.exception("%s failed; trying again in %.1f s", self.name, self.interval)
