"""What one worker holds while it serves: built by the app's lifespan, never at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from reco.config import Settings
from reco.service.batching import BatchScorer
from reco.service.catalog_state import CatalogState
from reco.service.key_memo import KeyMemo
from reco.service.metrics import ServiceMetrics
from reco.service.model_holder import ModelHolder
from reco.service.periodic import PeriodicTask

# While the store is unreachable, a key verified this recently still admits reads.
OUTAGE_KEY_SECONDS = 3_600.0

if TYPE_CHECKING:
    from reco.events import EventsRuntime
    from reco.service.cache import RecommendationCache
    from reco.service.new_items import NewItems
    from reco.service.online import OnlineView
    from reco.service.ratelimit import RateLimiter


@dataclass
class ServiceState:
    """The store, the served model, the catalogue state, cache, rate limiter, metrics,
    the batch scorer, the event path (relay, processor, online features) and the memo of recently
    verified API keys (``outage_keys``: the same for longer, used only while the
    store cannot be reached, so reads go on)."""

    settings: Settings
    engine: Engine
    holder: ModelHolder
    catalog: CatalogState
    cache: RecommendationCache | None
    limiter: RateLimiter
    metrics: ServiceMetrics
    watchers: list[PeriodicTask] = field(default_factory=list)
    events: EventsRuntime | None = None
    online: OnlineView | None = None
    # Stored items the served model was not trained with (reco.service.new_items).
    new_items: NewItems | None = None
    keys: KeyMemo = field(default_factory=KeyMemo)
    outage_keys: KeyMemo = field(default_factory=lambda: KeyMemo(OUTAGE_KEY_SECONDS))
    # Scores concurrent recommendation requests together (reco.service.batching).
    scorer: BatchScorer = field(default_factory=BatchScorer)
    # user id -> time.monotonic() of this worker's last change to them (see
    # reco.service.recommending.forget_answers): an answer computed before it is not cached.
    changed_users: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the watchers and the event path; release the cache and the store."""
        for watcher in self.watchers:
            watcher.stop()
        if self.events is not None:
            self.events.stop()
        self.scorer.close()
        if self.cache is not None:
            self.cache.close()
        self.engine.dispose()
