"""Events: interactions stored durably, honoured by the user's next answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from reco.service.deps import State, WriteKey
from reco.service.errors import Problem
from reco.service.recommending import forget_answers
from reco.service.routes.params import WRITE, problems
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
) -> EventsAccepted:
    """Validate and store events (one object or a list) in one transaction; 202 once
    they are durable. A batch with any bad event stores nothing and lists every
    problem. An ``event_id`` sent again is counted in ``duplicates``, not stored twice."""
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
        return EventsAccepted(accepted=0, duplicates=0)
    result = append_events(state.engine, [e.model_dump() for e in batch], source="api")
    forget_answers(state, list(dict.fromkeys(e.user_id for e in batch)))
    state.metrics.events_accepted.inc(result.accepted)
    state.metrics.events_duplicate.inc(result.duplicates)
    return EventsAccepted(accepted=result.accepted, duplicates=result.duplicates)
