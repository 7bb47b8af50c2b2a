"""Events: validated, stored durably, then relayed to the event bus and processors.

The 202 means the events are in the store: the user's next answer honours them at
once (see :mod:`reco.service.online`); the online features (trending, segments,
dislikes) follow as soon as a processor has applied them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, Field

from reco.config import EventsConfig
from reco.errors import ValidationError
from reco.service.deps import ReadKey, State, WriteKey
from reco.service.errors import Problem
from reco.service.recommending import forget_answers
from reco.service.routes.params import JSON, READ, WRITE, problems
from reco.service.schemas import EventIn, EventsAccepted

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    responses=problems(*WRITE),
    summary="Record one event or a batch",
)
def post_events(
    _key: WriteKey,
    state: State,
    events: Annotated[EventIn | list[EventIn], Body()],
) -> Response:
    """Validate and store events (one object or a list) in one transaction; 202 once
    they are durable. A batch with any bad event (an unknown ``event_type`` too: the
    problem lists the known ones) stores nothing and lists every problem by index. An
    ``event_id`` sent again is counted in ``duplicates``, not stored twice."""
    from reco.store.events import append_events

    batch = events if isinstance(events, list) else [events]
    limit = state.settings.service.max_batch_events
    if len(batch) > limit:
        raise Problem(
            413,
            f"{len(batch):,} events is more than one request takes ({limit:,}); split the batch",
            kind="batch-too-large",
        )
    if not batch:
        return _accepted(0, 0)
    # The validated fields as they are (model_dump would copy each event: as much CPU
    # as validating the batch); append_events only reads them.
    records = [vars(e) for e in batch]
    check_batch(state.settings.events, records)
    result = append_events(state.engine, records, source="api")
    if state.events is not None:
        state.events.notify()
    forget_answers(state, list(dict.fromkeys(e.user_id for e in batch)))
    state.metrics.events_accepted.inc(result.accepted)
    state.metrics.events_duplicate.inc(result.duplicates)
    return _accepted(result.accepted, result.duplicates)


def _accepted(accepted: int, duplicates: int) -> Response:
    """The 202 body, written directly: validating and serialising it through the
    response model was about a tenth of a worker's time under single-event load."""
    return Response(
        f'{{"accepted":{accepted},"duplicates":{duplicates}}}',
        status_code=202,
        media_type=JSON,
    )


class EventsProgress(BaseModel):
    """How far this worker's event path is (None where it cannot tell right now)."""

    bus: str = Field(description="'memory' (in-process) or 'redis' (Redis Streams).")
    stored_through: int | None = Field(description="Largest event id in the store.")
    processed_through: int | None = Field(
        description="Every event up to this id has reached the online features."
    )
    events_applied: int | None = Field(description="Events the online features counted.")
    published: int = Field(description="Events this worker's relay put on the bus.")
    applied: int = Field(description="Events this worker's processor applied.")


@router.get(
    "/events/status",
    response_model=EventsProgress,
    responses=problems(*READ),
    summary="How far the event path is",
)
def events_status(_key: ReadKey, state: State) -> EventsProgress:
    """The store's newest event id next to what the online features have applied: an
    event is in the online features (trending, segments, every worker's cache
    dropped) once ``processed_through`` reaches its id."""
    from reco.store.events import watermark

    runtime = state.events
    try:
        stored: int | None = watermark(state.engine)
    except Exception:  # the store is down: say so with None, like the bus fields
        stored = None
    if runtime is None:
        return EventsProgress(
            bus="none",
            stored_through=stored,
            processed_through=None,
            events_applied=None,
            published=0,
            applied=0,
        )
    status = runtime.status()
    try:
        applied: int | None = runtime.features.events_applied()
    except Exception:  # Redis down
        applied = None
    return EventsProgress(
        bus=status.bus,
        stored_through=stored,
        processed_through=status.processed_through,
        events_applied=applied,
        published=status.published,
        applied=status.applied,
    )


def check_batch(config: EventsConfig, records: list[dict[str, Any]]) -> None:
    """Raise one ValidationError listing every problem of the batch by index: unknown
    event types (naming the known ones) and whatever the store would refuse."""
    from reco.store.events import events_frame

    try:
        config.check_event_types(r.get("event_type") for r in records)
    except ValidationError as unknown:
        problems = list(unknown.problems)
        try:
            events_frame(records)
        except ValidationError as invalid:
            problems += invalid.problems
        problems.sort(key=_event_index)
        raise ValidationError(problems, source="events") from None


def _event_index(problem: str) -> int:
    """The index in an "event <index>: ..." problem (problems stay in batch order)."""
    head = problem.split(":", 1)[0].removeprefix("event ").strip()
    return int(head) if head.isdigit() else -1
