"""Settings: one object, read from the environment (prefix ``RECO_``), passed down."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reco.errors import ValidationError


class RankerConfig(BaseModel):
    """The LightGBM LambdaRank reranker and how it is trained.

    Trained on the validation split inside the training data: candidates and features
    from sources fitted on the earlier part, labels are each user's next interactions.
    A share of those users stops boosting early (NDCG@10), another share is held out
    to measure the pipeline against every source alone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: serve the best single source, no ranker.")
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(15, ge=2)
    min_data_in_leaf: int = Field(100, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(10.0, ge=0)
    truncation_level: int = Field(20, ge=1, description="LambdaRank pairs considered per list.")
    max_rounds: int = Field(1000, ge=1, description="Boosting rounds at most.")
    early_stopping_rounds: int = Field(
        60, ge=1, description="Rounds without a better smoothed stopping NDCG@10 before stopping."
    )
    stopping_window: int = Field(
        20, ge=1, description="Rounds the stopping NDCG@10 is averaged over (noise)."
    )
    num_threads: int = Field(
        1, ge=1, description="LightGBM threads; 1 is fastest on a busy 2-core machine."
    )
    max_users: int = Field(
        20_000, ge=10, description="Validation users sampled for the ranker (time bound)."
    )
    early_stopping_share: float = Field(
        0.25, gt=0, lt=1, description="Share of ranker users that decide when to stop."
    )
    selection_share: float = Field(
        0.25, gt=0, lt=1, description="Share of validation users held out for selection."
    )


class PipelineConfig(BaseModel):
    """The multi-stage recommender: sources and quotas, routing, features, filters.

    Parameters of each source model come from ``Settings.model_params`` (by model name).
    Set as JSON, e.g. ``RECO_PIPELINE='{"sources": {"itemknn": 300, "als": 100}}'``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, int] = Field(
        default_factory=lambda: {
            # Measured: these quotas (about 190 candidates a user) rank as well as
            # 100/100/50/30/30/30/30/50 on ml-100k and ml-latest-small (NDCG@10 0.2747
            # vs 0.2683, 0.1671 vs 0.1649) and the ranker scores far fewer rows.
            "ease": 60,
            "itemknn": 60,
            "als": 30,
            "popularity": 20,
            "segment_popularity": 20,
            "trending": 20,
            "content": 20,
            "two_tower": 40,
        },
        description="Candidate sources (model registry names) and how many items each proposes.",
    )
    cold_history_threshold: int | None = Field(
        None,
        ge=0,
        description=(
            "Users with fewer history items than this are cold (context popularity); None: "
            "chosen on validation by serving held-out users their last k items both ways."
        ),
    )
    cold_trending_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Weight of trending in the cold users' blend with segment popularity; None: "
            "chosen on validation (validation users served from their attributes alone)."
        ),
    )
    # Measured (NDCG@10 / Recall@20, served pipeline): all items 0.2682 / 0.3108 on
    # ml-100k and 0.1630 / 0.2095 on ml-latest-small; the latest 128: 0.2690 / 0.3128
    # and 0.1645 / 0.2029; the latest 64: 0.2694 / 0.3149 and 0.1524 / 0.1922. 128 bounds
    # a heavy user's cost (scoring time grows with history) at no loss in NDCG.
    scored_history: int | None = Field(
        128,
        ge=1,
        description=(
            "History items the sources score a row from: its most recent ones (None: all). "
            "Bounds the cost of a long history; filters and features still see all of it."
        ),
    )
    recent_lengths: list[int] = Field(
        default_factory=lambda: [1, 3, 10],
        description="History suffixes (most recent items) the recency features score from.",
    )
    recent_sources: list[str] = Field(
        default_factory=lambda: ["itemknn", "ease"],
        description="Sources whose scores from the recent history suffixes are features.",
    )
    popularity_windows_days: list[float] = Field(
        default_factory=lambda: [1.0, 7.0, 30.0],
        description="Windows before the request of the recent item popularity features.",
    )
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    refit_on_all: bool = Field(
        True, description="Refit the sources on all training data once the ranker is trained."
    )
    seen_event_types: list[str] | None = Field(
        None,
        description="Event types whose items are never recommended again (None: every type).",
    )
    exclude_seen: bool = Field(True, description="Never recommend items already in a history.")
    diversity: float = Field(
        0.0, ge=0, lt=1, description="MMR weight of dissimilarity to earlier picks (0: off)."
    )
    diversity_by: str = Field("categories", description="'categories' or 'embeddings'.")
    exploration_share: float = Field(
        0.0, ge=0, lt=1, description="Share of each list given to new items (0: off)."
    )
    new_item_days: float = Field(
        30.0, gt=0, description="Items first seen this recently count as new for exploration."
    )
    scoring_threads: int = Field(
        2,
        ge=1,
        description="Threads scoring blocks of a batch (1 in a service worker, per DESIGN.md).",
    )
    explain_history_template: str = Field(
        "because you watched {title}",
        description="Reason for collaborative items; {title} is the history item behind it.",
    )

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, sources: dict[str, int]) -> dict[str, int]:
        if not sources:
            raise ValueError("the pipeline needs at least one source, e.g. {'itemknn': 200}")
        bad = {name: quota for name, quota in sources.items() if int(quota) < 1}
        if bad:
            raise ValueError(f"source quotas must be at least 1, got {bad}")
        return sources

    @field_validator("recent_lengths")
    @classmethod
    def _check_lengths(cls, lengths: list[int]) -> list[int]:
        if any(length < 1 for length in lengths):
            raise ValueError(f"recent_lengths must be positive, got {lengths}")
        return sorted(set(lengths))

    @field_validator("diversity_by")
    @classmethod
    def _check_diversity_by(cls, value: str) -> str:
        if value not in ("categories", "embeddings"):
            raise ValueError(f"diversity_by must be 'categories' or 'embeddings', got {value!r}")
        return value


class ServiceConfig(BaseModel):
    """The HTTP service (`reco serve`): binding, auth, limits, cache, reloading.

    Set as JSON (``RECO_SERVICE='{"port": 9000}'``) or one field at a time
    (``RECO_SERVICE__PORT=9000``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to bind; beyond loopback needs keys.")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    auth_enabled: bool = Field(
        True, description="API keys required (secure by default); False only on loopback."
    )
    rate_limit_per_second: float = Field(
        100.0, gt=0, description="Requests per second each API key may sustain (token refill)."
    )
    rate_limit_burst: int = Field(200, ge=1, description="Requests a key may make at once.")
    cache_enabled: bool = Field(True, description="Cache recommendation answers.")
    cache_ttl_seconds: float = Field(60.0, gt=0, description="How long a cached answer lives.")
    cache_max_entries: int = Field(10_000, ge=1, description="In-process cache size (LRU).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body (413).")
    max_batch_events: int = Field(1_000, ge=1, description="Most events in one POST (413).")
    max_n: int = Field(500, ge=1, description="Most items one request may ask for.")
    max_candidates: int = Field(2_000, ge=1, description="Most candidates one rerank may send.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (empty: CORS off)."
    )
    reload_check_seconds: float = Field(
        1.0, gt=0, description="How often a worker looks for a newly promoted model."
    )
    balance_connections: bool = Field(
        True,
        description=(
            "With several workers, a worker holding more active keep-alive connections "
            "than the others closes one now and then, so that they even out."
        ),
    )
    compile_ranker: bool = Field(
        True,
        description=(
            "Compile the ranker's trees to machine code when a model is loaded (a few "
            "seconds; about 5x faster reranking per request)."
        ),
    )
    catalog_refresh_seconds: float = Field(
        1.0, gt=0, description="How often a worker rereads item availability from the store."
    )
    # On by default, unlike the pipeline's exploration_share: offline NDCG cannot see
    # items the model never trained on, and without slots they stay invisible until the
    # next retraining. A slot goes only to a new item with a signal for the user
    # (content similarity to their history, or trending); otherwise the ranked item keeps it.
    new_items_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description=(
            "Share of each answer (below the top 3) given to items added since the served "
            "model was trained, alternately by content similarity and trending (0: off)."
        ),
    )


# Weight of each event type; None means "the event's value" (a rating of 4 weighs 4).
# A negative weight marks a dislike: the item is never recommended to that user again.
DEFAULT_EVENT_TYPES: dict[str, float | None] = {
    "interaction": 1.0,  # what files without an event type are stored as
    "view": 1.0,
    "click": 2.0,
    "like": 4.0,
    "purchase": 8.0,
    "rating": None,
    "dislike": -1.0,
}


class EventsConfig(BaseModel):
    """The real-time event path: event types and weights, the bus, online features.

    Set as JSON (``RECO_EVENTS='{"history_length": 100}'``) or one field at a time
    (``RECO_EVENTS__BUS=redis``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: dict[str, float | None] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_TYPES),
        description=(
            "Known event types and their weights; null: the event's value (ratings); "
            "negative: a dislike (never recommended to that user again)."
        ),
    )
    bus: Literal["auto", "memory", "redis"] = Field(
        "auto", description="Event bus: 'auto' is Redis Streams when redis_url is set, else memory."
    )
    stream: str = Field("reco:events", min_length=1, description="Redis stream of events.")
    group: str = Field(
        "reco-processors", min_length=1, description="Consumer group the processors share."
    )
    key_prefix: str = Field(
        "reco:online:", min_length=1, description="Prefix of the online features' Redis keys."
    )
    max_stream_length: int = Field(
        100_000,
        ge=100,
        description=(
            "Most entries the stream holds (approximately): processed entries are trimmed, "
            "and the relay waits while this many are unprocessed (they stay in the store)."
        ),
    )
    claim_idle_ms: int = Field(
        30_000,
        ge=100,
        description="A pending entry idle this long (its consumer died) is claimed by another.",
    )
    history_length: int = Field(200, ge=1, description="Recent events kept per user.")
    history_ttl_days: float | None = Field(
        None, gt=0, description="Forget a user's recent history after this idle time (Redis)."
    )
    trending_half_life_days: float = Field(
        7.0, gt=0, description="Half-life of the trending counts (the trending model's default)."
    )
    segment_attributes: list[str] = Field(
        default_factory=lambda: ["device", "os", "country"],
        description="User attributes whose values are segments with their own item counts.",
    )
    relay_batch: int = Field(1_000, ge=1, description="Events the relay publishes per round.")
    process_batch: int = Field(500, ge=1, description="Events a processor applies per round.")
    poll_seconds: float = Field(
        0.05, gt=0, description="How often an idle relay looks for new events in the store."
    )
    block_ms: int = Field(
        500, ge=1, description="How long an idle Redis processor waits for entries."
    )
    relay_lock_timeout_ms: int = Field(
        200,
        ge=1,
        description=(
            "PostgreSQL: longest the relay waits for in-flight event writes to commit "
            "before it tries again later."
        ),
    )
    rebuild_max_events: int | None = Field(
        None,
        ge=1,
        description=(
            "When the online features start empty, replay only about this many of the "
            "newest stored events (None: all of them)."
        ),
    )
    process_in_service: bool | None = Field(
        None,
        description=(
            "Whether service workers apply events themselves; None: yes with the memory "
            "bus, no with Redis (run `reco worker`)."
        ),
    )

    @field_validator("types")
    @classmethod
    def _check_types(cls, types: dict[str, float | None]) -> dict[str, float | None]:
        if not types:
            raise ValueError("at least one event type is needed, e.g. {'view': 1}")
        for name, weight in types.items():
            if not name or name != name.strip():
                raise ValueError(f"event type {name!r} must be non-empty without outer spaces")
            if weight is not None and not math.isfinite(weight):
                raise ValueError(f"event type {name!r} has weight {weight!r}; give a number")
        return types

    def resolved_bus(self, redis_url: str | None) -> Literal["memory", "redis"]:
        """The bus in use: ``bus``, with 'auto' meaning Redis exactly when a URL is set."""
        if self.bus == "auto":
            return "redis" if redis_url else "memory"
        return self.bus

    def event_weight(self, event_type: str, value: float | None = None) -> float:
        """The weight of one event: its type's weight, or its value for value-weighted
        types (1.0 when that value is missing). Raises KeyError naming the known types
        for an unknown type."""
        try:
            weight = self.types[event_type]
        except KeyError:
            raise KeyError(
                f"unknown event type {event_type!r}; known: {', '.join(sorted(self.types))}"
            ) from None
        if weight is not None:
            return float(weight)
        if value is None or not math.isfinite(value):
            return 1.0
        return float(value)

    def is_dislike(self, event_type: str) -> bool:
        """True for a type with a negative weight: the item is never recommended again."""
        weight = self.types.get(event_type)
        return weight is not None and weight < 0

    def check_event_types(self, event_types: Iterable[str | None]) -> None:
        """Raise ValidationError naming every event (by index) of an unknown type.

        ``None`` stands for the default type (``interaction``) and must be known too.
        """
        known = ", ".join(sorted(self.types))
        problems = [
            f"event {index}: event_type: {shown!r} is not a known event type; use one of "
            f"{known} (or add it to RECO_EVENTS__TYPES)."
            for index, given in enumerate(event_types)
            if (shown := "interaction" if given is None else given) not in self.types
        ]
        if problems:
            raise ValidationError(problems, source="events")


class Settings(BaseSettings):
    """Everything that configures a reco installation.

    Each field can be set with an environment variable named ``RECO_<FIELD>``,
    e.g. ``RECO_HOME=/srv/reco`` or ``RECO_DATABASE_URL=postgresql+psycopg://...``.
    """

    model_config = SettingsConfigDict(env_prefix="RECO_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path("var"), description="Where the store, models and caches live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default: SQLite under home."
    )
    data_dir: Path | None = Field(
        None, description="A folder holding MovieLens datasets, searched before downloading."
    )
    models: list[str] = Field(
        ["popularity", "itemknn", "als", "ease"],
        description=(
            "Reference models `reco evaluate` reports alone next to the pipeline; those "
            "that are pipeline sources are reported from the pipeline's own fit."
        ),
    )
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig,
        description="The multi-stage recommender that `reco train` fits and serves.",
    )
    model_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Parameters per model, e.g. RECO_MODEL_PARAMS=\'{"als": {"factors": 128}}\'.',
    )
    seed: int = Field(42, description="Seed for every random choice (splits, models).")
    redis_url: str | None = Field(
        None,
        description=(
            "Redis (e.g. redis://127.0.0.1:6379/0): when set, the service's cache and rate "
            "limits are shared through it across workers and replicas."
        ),
    )
    service: ServiceConfig = Field(
        default_factory=ServiceConfig, description="The HTTP service (`reco serve`)."
    )
    events: EventsConfig = Field(
        default_factory=EventsConfig,
        description="The real-time event path: types and weights, bus, online features.",
    )
    retrain_tolerance: float = Field(
        0.02,
        ge=0,
        lt=1,
        description=(
            "`reco retrain` promotes a new version unless its validation NDCG@10 is below "
            "the serving version's (re-measured on the same validation users) by more than "
            "this share of it (0.02: up to 2% worse still promotes)."
        ),
    )
    retrain_every: str | None = Field(
        None, description="`reco worker` default for --retrain-every (e.g. 30m, 1h, 1d)."
    )
    retrain_after_events: int | None = Field(
        None, ge=1, description="`reco worker` default for --retrain-after-events."
    )

    @property
    def resolved_database_url(self) -> str:
        """The store's URL: the configured one, or SQLite in WAL mode under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'reco.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        """Folder of versioned model artifacts."""
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        """Folder of downloaded datasets."""
        return self.home / "cache"
