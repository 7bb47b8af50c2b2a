"""Probes and metrics: open to all (no API key), so that orchestrators and scrapers
reach them; expose the service only where they should."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from reco.service.deps import State
from reco.service.errors import Problem
from reco.service.routes.params import problems
from reco.service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health, response_model_exclude_none=True)
async def live() -> Health:
    """The process answers (even before any model is trained)."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    response_model_exclude_none=True,
    responses=problems(503),
)
def ready(state: State) -> Health:
    """Ready to serve: a model is loaded and the store answers; 503 with why if not."""
    model = state.holder.current
    version = model.version if model is not None else None
    problems_found = []
    if model is None:
        problems_found.append(state.holder.last_error or "no model: run `reco train`")
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        problems_found.append(f"the store is unreachable ({type(exc).__name__})")
    if problems_found:
        raise Problem(
            503,
            "; ".join(problems_found),
            kind="not-ready",
            headers={"Retry-After": "10"},
            extra={"model_version": version},
        )
    return Health(status="ok", model_version=version)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(state: State) -> Response:
    """Prometheus metrics (every worker's, when several run)."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
