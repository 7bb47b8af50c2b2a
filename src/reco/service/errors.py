"""Errors as ``application/problem+json`` (RFC 9457).

Every error answer has ``type`` (``urn:reco:problem:<kind>``), ``title``, ``status``,
``detail`` (what was wrong and how to fix it), ``instance`` (the request path) and
``request_id`` (quote it when reporting a problem); some add ``errors``, a list of
every individual problem. Raise :class:`Problem` from a route; library errors are
translated here, so routes stay thin.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reco.errors import RecoError, ValidationError
from reco.pipeline.pipeline import UnknownItemError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
STORE_RETRY_SECONDS = 5
_MAX_LISTED = 50


class Problem(Exception):
    """An error answer: raise it from a route or dependency."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        phrase = HTTPStatus(status).phrase
        self.status = status
        self.detail = detail
        self.kind = kind or phrase.lower().replace(" ", "-").replace("'", "")
        self.title = title or phrase
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_body(problem: Problem, instance: str, request_id: str | None) -> bytes:
    """The JSON document of ``problem``."""
    body: dict[str, Any] = {
        "type": f"urn:reco:problem:{problem.kind}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        "request_id": request_id,
    }
    body.update(problem.extra)
    return json.dumps(body, ensure_ascii=False, default=str).encode()


def problem_response(request: Request, problem: Problem) -> Response:
    """The answer for ``problem`` to ``request`` (counted in the errors metric)."""
    state = request.scope.get("state") or {}
    request_id = state.get("request_id")
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(problem.kind).inc()
    return Response(
        problem_body(problem, request.url.path, request_id),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def store_unavailable(exc: Exception) -> Problem:
    """503: the store cannot be reached (nothing was written); try again shortly."""
    return Problem(
        503,
        "the store database cannot be reached right now, so nothing was read or written; "
        f"retry in a few seconds. If it persists, check the database server ({type(exc).__name__})",
        kind="store-unavailable",
        headers={"Retry-After": str(STORE_RETRY_SECONDS)},
    )


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = []
    for error in exc.errors()[:_MAX_LISTED]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        errors.append({"field": location, "message": str(error.get("msg", "invalid"))})
    listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
    return Problem(
        422,
        f"the request has {len(exc.errors())} invalid field(s): {listed}. Fix them and send "
        "it again (see /docs for every field).",
        kind="invalid-request",
        extra={"errors": errors},
    )


def _reco_validation_problem(exc: ValidationError) -> Problem:
    problems = exc.problems[:_MAX_LISTED]
    listed = "; ".join(problems[:10])
    more = f" (and {len(exc.problems) - 10} more)" if len(exc.problems) > 10 else ""
    return Problem(
        422,
        f"{len(exc.problems)} problem(s) found, nothing was changed: {listed}{more}",
        kind="invalid-data",
        extra={"errors": [{"message": p} for p in problems]},
    )


def _http_problem(exc: StarletteHTTPException) -> Problem:
    if exc.status_code == 404:
        detail = "no such endpoint; see /docs for the API (every route is under /v1)"
    elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        detail = (
            "the request body cannot be read: send JSON encoded as UTF-8 with "
            "`Content-Type: application/json`"
        )
        return Problem(400, detail, kind="unreadable-body")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("allow", "")
        detail = f"this endpoint does not take that method; it takes: {allowed or 'see /docs'}"
    else:
        detail = str(exc.detail)
    return Problem(exc.status_code, detail, headers=exc.headers)


def _database_problem(exc: DBAPIError) -> Problem:
    if isinstance(exc, DataError):
        return Problem(
            422,
            "the store refused a value of the request (e.g. a character the database "
            "cannot hold, or a number out of range); check ids, texts and attributes",
            kind="invalid-data",
        )
    if isinstance(exc, IntegrityError):
        return Problem(
            409,
            "the write conflicts with what the store holds (another request changed it); "
            "send it again",
            kind="conflict",
        )
    return store_unavailable(exc)


def install_handlers(app: FastAPI) -> None:
    """Translate errors into problem answers for every route of ``app``."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(request, _validation_problem(exc))

    @app.exception_handler(ValidationError)
    async def _invalid_data(request: Request, exc: ValidationError) -> Response:
        return problem_response(request, _reco_validation_problem(exc))

    @app.exception_handler(UnknownItemError)
    async def _unknown_item(request: Request, exc: UnknownItemError) -> Response:
        return problem_response(request, Problem(404, str(exc), kind="unknown-item"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem_response(request, _http_problem(exc))

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        return problem_response(request, _logged_database_problem(exc))

    @app.exception_handler(RecoError)
    async def _reco(request: Request, exc: RecoError) -> Response:
        # The store functions wrap database errors in a RecoError saying nothing changed.
        if isinstance(exc.__cause__, DBAPIError):
            return problem_response(request, _logged_database_problem(exc.__cause__))
        raise exc  # anything else is a bug: the middleware answers 500 and logs it


def _logged_database_problem(exc: DBAPIError) -> Problem:
    problem = _database_problem(exc)
    log.warning(
        "store error answered %d: %s",
        problem.status,
        type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
    )
    return problem
