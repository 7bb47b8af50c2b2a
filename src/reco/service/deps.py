"""Dependencies of the routes: the worker's state, the served model, API keys and limits.

Authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Roles are
ordered read < write < admin: read for recommendations, items, users, similar items
and models; write for events and changing users or items; admin for promote and
rollback. ``/health/*`` and ``/metrics`` are open (for probes and scrapers; bind the
service where only they reach them, or put them behind your proxy's rules).

Rate limits are per API key (per client address when auth is disabled): a token
bucket of ``rate_limit_per_second`` with bursts of ``rate_limit_burst``. Requests with
a wrong key count against their client address's bucket, so guessing keys is limited
too. A revoked key stops working within a second (see :mod:`reco.service.key_memo`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from reco.service.errors import Problem
from reco.service.keys import ApiKey, Role, verify_key
from reco.service.model_holder import NO_MODEL, LoadedModel
from reco.service.online import is_store_outage
from reco.service.state import ServiceState

# How a key may be sent, for the OpenAPI schema (reco.service.app adds them). The routes
# read the headers themselves: FastAPI's security classes are sub-dependencies it solves
# again on every request (about 15% of a cached answer's CPU, measured in process).
SECURITY_SCHEMES = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `reco keys create`, as a Bearer token.",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from `reco keys create`.",
    },
}
NO_MODEL_RETRY_SECONDS = 10
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="reco"'}


def service_state(request: Request) -> ServiceState:
    """The worker's state, built by the lifespan."""
    return request.app.state.service


async def get_state(request: Request) -> ServiceState:
    """The worker's state as a dependency (async: no threadpool hop)."""
    return service_state(request)


State = Annotated[ServiceState, Depends(get_state)]


async def get_model(request: Request) -> LoadedModel:
    """The model to answer with, taken once per request (a swap never changes it under
    the request); 503 before any model was trained."""
    holder = service_state(request).holder
    model = holder.current
    if model is None:
        raise Problem(
            503,
            holder.last_error or NO_MODEL,
            kind="no-model",
            headers={"Retry-After": str(NO_MODEL_RETRY_SECONDS)},
        )
    return model


Model = Annotated[LoadedModel, Depends(get_model)]


def require(role: Role) -> Callable[..., ApiKey | None]:
    """A dependency admitting requests whose key has at least ``role``, within its
    rate limit. It returns the key (None when auth is disabled)."""

    async def authorize(request: Request) -> ApiKey | None:
        state = service_state(request)
        client = request.client.host if request.client else "unknown"
        if not state.settings.service.auth_enabled:
            await _limit(state, f"ip:{client}")
            return None
        secret = sent_key(request)
        if not secret:
            raise Problem(
                401,
                "this endpoint needs an API key: send `Authorization: Bearer <key>` or "
                "`X-API-Key: <key>` (an admin creates keys with `reco keys create --name NAME "
                "--role read|write|admin`)",
                kind="unauthenticated",
                headers=_CHALLENGE,
            )
        # Async, with the store (and Redis) reached from the threadpool only when needed:
        # a request with a remembered key and in-memory limits costs no thread hop here.
        key = state.keys.recall(secret)
        if key is None:
            key = await _verify(state, secret)
        if key is None:
            await _limit(state, f"failed-auth:{client}")
            raise Problem(
                401,
                "the API key is unknown or revoked; check that it was copied whole, or ask "
                "an admin for a new one (`reco keys create`)",
                kind="unauthenticated",
                headers=_CHALLENGE,
            )
        request.state.key_id = key.key_id
        if not key.role.allows(role):
            raise Problem(
                403,
                f"API key {key.key_id} has role {key.role.value}; this endpoint needs "
                f"{role.value} or above. Use a key with that role.",
                kind="forbidden",
            )
        await _limit(state, f"key:{key.key_id}")
        return key

    authorize.__name__ = f"require_{role.value}"
    return authorize


def sent_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key``; None when
    neither holds one (an Authorization header of another scheme is not a key)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip()
    if scheme.lower() == "bearer" and token:
        return token
    return request.headers.get("x-api-key") or None


async def _verify(state: ServiceState, secret: str) -> ApiKey | None:
    """The store's answer for ``secret``; while the store cannot be reached, a key it
    verified within the last hour (``outage_keys``) still gets in, so reads go on."""
    try:
        key = await run_in_threadpool(verify_key, state.engine, secret)
    except Exception as exc:
        remembered = state.outage_keys.recall(secret)
        if remembered is None or not is_store_outage(exc):
            raise
        return remembered
    state.keys.remember(secret, key)
    state.outage_keys.remember(secret, key)
    return key


async def _limit(state: ServiceState, who: str) -> None:
    limiter = state.limiter
    # In memory, or a token this worker holds: a few microseconds under a lock.
    decision = limiter.acquire_local(who)
    if decision is None:
        decision = await run_in_threadpool(limiter.acquire, who)
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after))
        raise Problem(
            429,
            f"rate limit reached ({state.settings.service.rate_limit_per_second:g} requests/s, "
            f"bursts of {state.settings.service.rate_limit_burst}); retry in {wait} s",
            kind="rate-limited",
            headers={"Retry-After": str(wait)},
        )


ReadKey = Annotated[ApiKey | None, Depends(require(Role.READ))]
WriteKey = Annotated[ApiKey | None, Depends(require(Role.WRITE))]
AdminKey = Annotated[ApiKey | None, Depends(require(Role.ADMIN))]
