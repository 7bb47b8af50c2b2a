"""When to retrain: every so long, or after so many new events, one run at a time.

:class:`RetrainScheduler` runs in a background thread of `reco worker`. It checks
every ``check_seconds`` and retrains when ``every`` seconds have passed since the
last run (or since it started), or when the store holds ``after_events`` events
beyond the newest snapshot a model was trained on (the serving version's
``store_watermark``, or the last retrain's, promoted or not, so a version kept
unpromoted does not trigger again at once). A failed run is logged and retried
no sooner than ``retry_seconds`` later; the worker keeps processing events.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from reco.config import Settings
from reco.errors import ConfigurationError
from reco.registry import ModelRegistry
from reco.registry.artifacts import MANIFEST

log = logging.getLogger(__name__)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds of a duration like ``90s``, ``30m``, ``1h``, ``1.5d``.

    Raises ConfigurationError saying what was given and what is accepted.
    """
    match = _DURATION.match(text or "")
    if match is None:
        raise ConfigurationError(
            f"{text!r} is not a duration; write a number and a unit: s, m, h or d "
            "(e.g. 30m, 1h, 1d)"
        )
    seconds = float(match.group(1)) * UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ConfigurationError(f"duration {text!r} must be longer than zero")
    return seconds


class RetrainScheduler:
    """Triggers retrains on time or on new events, in one background thread."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        every: float | None = None,
        after_events: int | None = None,
        check_seconds: float = 5.0,
        retry_seconds: float = 300.0,
        run: Callable[[], Any] | None = None,
    ) -> None:
        if every is None and after_events is None:
            raise ConfigurationError("give a retrain period, a number of events, or both")
        self.settings = settings
        self.engine = engine
        self.every = every
        self.after_events = after_events
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self._run = run or self._retrain
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_run = time.monotonic()
        self._not_before = 0.0
        self._trained_through = 0
        self.runs = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start checking in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="reco-retrain", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop checking; a retrain in progress finishes first (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def new_events(self) -> int:
        """Events stored beyond the newest snapshot a model was trained on."""
        from reco.store.events import watermark

        return watermark(self.engine) - max(self._model_watermark(), self._trained_through)

    def due(self) -> str | None:
        """Why a retrain is due now, or None."""
        now = time.monotonic()
        if now < self._not_before:
            return None
        if self.every is not None and now - self._last_run >= self.every:
            return f"{self.every:g} s since the last retrain"
        if self.after_events is not None:
            fresh = self.new_events()
            if fresh >= self.after_events:
                return f"{fresh:,} new events (threshold {self.after_events:,})"
        return None

    def check_once(self) -> bool:
        """Retrain if due; True when a retrain ran (successfully or not)."""
        try:
            why = self.due()
        except Exception as exc:  # the store may be down: try again next check
            log.warning("retrain check failed: %s", exc)
            return False
        if why is None:
            return False
        log.info("retraining: %s", why)
        self._last_run = time.monotonic()
        try:
            outcome = self._run()
        except Exception as exc:
            self.failures += 1
            self.last_error = str(exc)
            self._not_before = time.monotonic() + self.retry_seconds
            log.exception("retrain failed (next try in %.0f s)", self.retry_seconds)
            return True
        self.runs += 1
        self.last_error = None
        self._trained_through = max(
            self._trained_through, int(getattr(outcome, "store_watermark", 0) or 0)
        )
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.check_seconds)

    def _model_watermark(self) -> int:
        registry = ModelRegistry(self.settings.models_dir)
        version = registry.current_version()
        if version is None:
            return 0
        # The manifest alone (no checksum pass over the artifact on every check).
        manifest = json.loads((registry.root / version / MANIFEST).read_text())
        return int(manifest.get("store_watermark") or 0)

    def _retrain(self) -> Any:
        from reco.training.retrain import retrain

        outcome = retrain(self.engine, self.settings)
        log.info(
            "retrain %s %s: %s",
            outcome.version,
            "promoted" if outcome.promoted else "kept unpromoted",
            outcome.reason,
        )
        return outcome
