"""Parameter types and documented error answers shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from reco.service.schemas import PATH_ID_PATTERN
from reco.store.tables import MAX_ID_LENGTH

PathId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=PATH_ID_PATTERN,
        description="An id: 1 to 512 characters, no control characters, no '/'.",
    ),
]
JSON = "application/json"


class ProblemDetails(BaseModel):
    """An error (RFC 9457): what went wrong and how to fix it."""

    type: str = Field(description="urn:reco:problem:<kind>")
    title: str
    status: int
    detail: str = Field(description="What was wrong and how to fix it.")
    instance: str = Field(description="The request path.")
    request_id: str | None = Field(None, description="Quote it when reporting a problem.")
    errors: list[dict[str, Any]] | None = Field(None, description="Each invalid field.")


_DESCRIPTIONS = {
    400: "The body is not readable JSON.",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key's role is not enough for this endpoint.",
    404: "No such resource.",
    409: "Conflicts with the current state.",
    413: "The request body or batch is too large.",
    422: "The request is invalid; `errors` lists each field.",
    429: "Rate limit reached; see Retry-After.",
    503: "No model trained yet, or the store is unreachable; see Retry-After.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these problem answers."""
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {
        code: {
            "description": _DESCRIPTIONS.get(code, "An error."),
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code in codes
    }


READ = (401, 403, 422, 429)
WRITE = (400, 401, 403, 413, 422, 429, 503)
