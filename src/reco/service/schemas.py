"""Request and response bodies of the HTTP API (they document it in /docs too)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from reco.store.tables import MAX_ID_LENGTH

# Ids are 1 to 512 characters without control characters (as the store requires).
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
# Ids in a URL path cannot hold "/" either (it would end the path segment).
PATH_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f/]+$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
]
# Category names and context keys and values: short printable text.
Label = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ID_PATTERN)]
ContextValue = (
    Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]
    | int
    | (Annotated[float, Field(allow_inf_nan=False)])
    | bool
)
Timestamp = (
    Annotated[float, Field(allow_inf_nan=False, ge=0)]
    | Annotated[str, StringConstraints(min_length=1, max_length=64)]
)
MAX_CONTEXT_KEYS = 32
MAX_HISTORY = 1_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- recommendations -------------------------------------------------------------------


class RecommendedItem(BaseModel):
    """One recommended item."""

    item_id: str
    score: float = Field(description="Higher is better; comparable within one answer only.")
    source: str = Field(description="The candidate source (or route) that proposed it.")
    explanation: str | None = Field(None, description="Why it was recommended (explain=true).")


class RecommendationResponse(BaseModel):
    """A ranked, explained list of items for one user or session."""

    user_id: str | None = Field(description="The user asked about (null: anonymous session).")
    items: list[RecommendedItem]
    model_version: str
    recommendation_id: str = Field(description="Unique per answer: log it with the feedback.")


class SessionEvent(_Strict):
    """One item of an anonymous session's history, with what happened and when."""

    item_id: Identifier
    event_type: Identifier = "interaction"
    timestamp: Timestamp | None = Field(None, description="Epoch seconds or ISO 8601.")


class SessionRequest(_Strict):
    """Recommendations for an anonymous session (or a known user plus session events),
    optionally restricted to reranking the caller's own candidates."""

    user_id: Identifier | None = Field(
        None, description="A known user whose stored history the session adds to."
    )
    history: list[Identifier | SessionEvent] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description="Items the session consumed, oldest first: ids or event objects.",
    )
    context: dict[Label, ContextValue] = Field(
        default_factory=dict,
        max_length=MAX_CONTEXT_KEYS,
        description="Request context such as device, os, country, age.",
    )
    n: int | None = Field(
        None, ge=1, description="Items to return (default 10; with candidates: all of them)."
    )
    category: list[Label] = Field(default_factory=list, description="Only these categories.")
    exclude_category: list[Label] = Field(default_factory=list, description="Not these.")
    exclude: list[Identifier] = Field(default_factory=list, description="Never these items.")
    candidates: list[Identifier] | None = Field(
        None, description="Rank only these items (the caller's candidate list)."
    )
    explain: bool = True


class SessionResponse(RecommendationResponse):
    """Recommendations for a session, with the ids the model does not know."""

    unknown_history: list[str] = Field(
        default_factory=list, description="History items not in the model (ignored)."
    )
    unknown_candidates: list[str] = Field(
        default_factory=list, description="Candidates not in the model (cannot be ranked)."
    )


class SimilarItemsResponse(BaseModel):
    """Items like one item."""

    item_id: str
    items: list[RecommendedItem]
    model_version: str
    recommendation_id: str


# -- events ----------------------------------------------------------------------------


class EventIn(_Strict):
    """One interaction: who did what with which item, and when."""

    user_id: Identifier
    item_id: Identifier
    event_type: Identifier = "interaction"
    timestamp: Timestamp | None = Field(None, description="Epoch seconds or ISO 8601.")
    value: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="A rating or count (optional)."
    )
    event_id: Identifier | None = Field(
        None, description="Your unique id of the event: sending it twice stores it once."
    )


class EventsAccepted(BaseModel):
    """What happened to a batch of events."""

    accepted: int = Field(description="Events stored.")
    duplicates: int = Field(description="Events already stored (skipped).")


# -- users and items -------------------------------------------------------------------


class UserIn(_Strict):
    """A user's attributes (replaced as a whole)."""

    attributes: dict[Label, Any] = Field(
        default_factory=dict, description="e.g. country, device, age: used for cold starts."
    )


class UserOut(BaseModel):
    """A stored user."""

    user_id: str
    attributes: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ItemIn(_Strict):
    """An item's metadata (replaced as a whole)."""

    title: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    text: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    categories: list[Label] | None = None
    available: bool = Field(True, description="False: never recommended until set back.")
    attributes: dict[Label, Any] | None = None


class ItemOut(BaseModel):
    """A stored item."""

    item_id: str
    title: str | None = None
    text: str | None = None
    categories: list[str] = Field(default_factory=list)
    available: bool
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


# -- models and health -----------------------------------------------------------------


class ModelVersionOut(BaseModel):
    """One trained model version."""

    version: str
    created_at: str | None = None
    current: bool = Field(description="The registry's current version.")
    serving: bool = Field(description="The version this worker answers with.")
    selected_model: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


class ModelsResponse(BaseModel):
    """Every trained version, newest last."""

    current: str | None
    serving: str | None
    versions: list[ModelVersionOut]


class ModelChange(BaseModel):
    """The outcome of promote or rollback."""

    current: str
    previous: str | None
    serving: str


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    model_version: str | None = None
    detail: str | None = None
