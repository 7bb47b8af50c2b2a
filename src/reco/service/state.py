"""What one worker holds while it serves: built by the app's lifespan, never at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from reco.config import Settings
from reco.service.catalog_state import CatalogState
from reco.service.key_memo import KeyMemo
from reco.service.metrics import ServiceMetrics
from reco.service.model_holder import ModelHolder
from reco.service.periodic import PeriodicTask

if TYPE_CHECKING:
    from reco.service.cache import RecommendationCache
    from reco.service.ratelimit import RateLimiter


@dataclass
class ServiceState:
    """The store, the served model, the catalogue state, cache, rate limiter, metrics,
    and the memo of recently verified API keys."""

    settings: Settings
    engine: Engine
    holder: ModelHolder
    catalog: CatalogState
    cache: RecommendationCache | None
    limiter: RateLimiter
    metrics: ServiceMetrics
    watchers: list[PeriodicTask] = field(default_factory=list)
    keys: KeyMemo = field(default_factory=KeyMemo)
    # user id -> time.monotonic() of this worker's last change to them (see
    # reco.service.recommending.forget_answers): an answer computed before it is not cached.
    changed_users: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the watchers and release the cache and the store."""
        for watcher in self.watchers:
            watcher.stop()
        if self.cache is not None:
            self.cache.close()
        self.engine.dispose()
