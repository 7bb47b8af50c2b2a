"""Recommendations: for a user (known or not), a session, or a rerank; similar items."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from reco.service import recommending
from reco.service.deps import Model, ReadKey, State
from reco.service.errors import Problem
from reco.service.routes.params import JSON, READ, PathId, problems
from reco.service.schemas import (
    MAX_CONTEXT_KEYS,
    RecommendationResponse,
    SessionRequest,
    SessionResponse,
    SimilarItemsResponse,
)

router = APIRouter(prefix="/v1", tags=["recommendations"])

RESERVED = frozenset({"n", "category", "exclude_category", "exclude", "explain"})
_CONTEXT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_MAX_CONTEXT_VALUE = 256
ListParam = Annotated[
    list[str] | None,
    Query(description="Repeat the parameter or separate values with commas."),
]


@router.get(
    "/users/{user_id}/recommendations",
    response_model=RecommendationResponse,
    responses=problems(*READ, 503),
    summary="Recommendations for a user",
)
async def user_recommendations(
    request: Request,
    _key: ReadKey,
    state: State,
    model: Model,
    user_id: PathId,
    n: Annotated[int, Query(ge=1, description="How many items.")] = recommending.DEFAULT_N,
    category: ListParam = None,
    exclude_category: ListParam = None,
    exclude: ListParam = None,
    explain: Annotated[bool, Query(description="Add a reason to each item.")] = True,
) -> Response:
    """Top-n items for a user. A user the model never saw, or one with too short a
    history, gets popularity for their context: every query parameter besides those
    listed (e.g. ``device``, ``os``, ``country``, ``age``) is request context."""
    recommending.check_n(state, n)
    query = recommending.Query(
        n=n,
        categories=_values(category),
        exclude_categories=_values(exclude_category),
        exclude=_values(exclude),
        explain=explain,
        context=_context(request.query_params),
    )
    # Async, so that an answer this worker holds in memory costs no thread hop; the rest
    # (store reads, scoring, Redis) runs on the threadpool.
    body = recommending.cached_answer(state, model, user_id, query)
    cached = body is not None
    if body is None:
        body, cached = await run_in_threadpool(
            recommending.user_answer, state, model, user_id, query
        )
    body = recommending.with_recommendation_id(body, recommending.new_recommendation_id())
    return Response(
        body,
        media_type=JSON,
        headers={"X-Model-Version": model.version, "X-Cache": "hit" if cached else "miss"},
    )


@router.post(
    "/recommendations",
    response_model=SessionResponse,
    responses=problems(*READ, 400, 413, 503),
    summary="Recommendations for a session, or a rerank of candidates",
)
def session_recommendations(
    _key: ReadKey, state: State, model: Model, request: Annotated[SessionRequest, Body()]
) -> Response:
    """Top-n items for an anonymous session from its history and context (or a known
    ``user_id`` plus session events). With ``candidates``, only those items are ranked
    (ids the model does not know are listed in ``unknown_candidates``)."""
    limit = state.settings.service.max_candidates
    if request.candidates is not None and len(request.candidates) > limit:
        raise Problem(
            413,
            f"{len(request.candidates):,} candidates is more than one rerank takes ({limit:,}); "
            "send fewer",
            kind="too-many-candidates",
        )
    body = recommending.session_answer(state, model, request)
    return Response(body, media_type=JSON, headers={"X-Model-Version": model.version})


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarItemsResponse,
    responses=problems(*READ, 404, 503),
    summary="Items similar to an item",
)
def similar_items(
    _key: ReadKey,
    state: State,
    model: Model,
    item_id: PathId,
    n: Annotated[int, Query(ge=1, description="How many items.")] = recommending.DEFAULT_N,
) -> Response:
    """Items most like ``item_id`` (people who consumed it also consumed them, or
    similar content). 404 when the model does not know the item."""
    body = recommending.similar_answer(state, model, item_id, n)
    return Response(body, media_type=JSON, headers={"X-Model-Version": model.version})


def _values(given: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated values, in order, without blanks or repeats."""
    out: dict[str, None] = {}
    for value in given or ():
        for part in value.split(","):
            part = part.strip()
            if part:
                _check_text("a filter value", part)
                out[part] = None
    return tuple(out)


def _context(params: QueryParams) -> dict[str, str]:
    """Every query parameter that is not one of the route's own, as request context."""
    context: dict[str, str] = {}
    for key, value in params.multi_items():
        if key in RESERVED:
            continue
        if not _CONTEXT_KEY.fullmatch(key):
            raise _bad_context(
                f"context parameter name {key[:80]!r} is not a name (letters, digits, "
                "'_', '.', '-'; at most 64 characters)"
            )
        _check_text(f"context parameter {key}", value)
        context[key] = value
    if len(context) > MAX_CONTEXT_KEYS:
        raise _bad_context(f"at most {MAX_CONTEXT_KEYS} context parameters, got {len(context)}")
    return context


def _check_text(what: str, value: str) -> None:
    if len(value) > _MAX_CONTEXT_VALUE or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise _bad_context(
            f"{what} must be at most {_MAX_CONTEXT_VALUE} characters without control characters"
        )


def _bad_context(detail: str) -> Problem:
    return Problem(422, detail, kind="invalid-request", extra={"errors": [{"message": detail}]})
