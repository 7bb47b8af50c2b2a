"""The FastAPI application factory: ``create_app(settings)``.

Nothing happens at import. ``create_app`` builds the app; its lifespan opens the store,
loads the current model (the service starts without one: ``/health/ready`` then says
why), builds the cache and the rate limiter, starts the event path
(:class:`reco.events.EventsRuntime`: with the in-process bus each worker relays and
processes the store's events itself; with Redis it only relays and ``reco worker``
processes) and three watchers: one swaps in a newly promoted model, one rereads item
availability, one rereads the items the served model was not trained with (new items,
:mod:`reco.service.new_items`). ``reco serve`` runs it under
uvicorn as a factory (``reco.service.app:create_app``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

import reco
from reco.config import Settings
from reco.service.balance import balance_for
from reco.service.catalog_state import CatalogState
from reco.service.deps import SECURITY_SCHEMES
from reco.service.errors import install_handlers
from reco.service.metrics import ServiceMetrics
from reco.service.middleware import ServiceMiddleware
from reco.service.model_holder import LoadedModel, ModelHolder
from reco.service.periodic import PeriodicTask
from reco.service.routes import events, health, items, models, recommendations, users
from reco.service.routes.params import ProblemDetails
from reco.service.state import ServiceState

log = logging.getLogger(__name__)

CacheFactory = Callable[[Settings], Any]
LimiterFactory = Callable[[Settings], Any]

DESCRIPTION = """\
Recommendations over HTTP: for known users (their history plus every event sent
since training), new users (popularity for their context), anonymous sessions and
reranks of your own candidates; similar items; events; users, items and model versions.

**Auth**: `Authorization: Bearer <key>` or `X-API-Key: <key>` (keys from
`reco keys create --name NAME --role read|write|admin`). `/health/*` and `/metrics` are open.
**Errors** are `application/problem+json` with a `detail` saying how to fix them.
"""


def create_app(
    settings: Settings | None = None,
    *,
    cache_factory: CacheFactory | None = None,
    limiter_factory: LimiterFactory | None = None,
) -> FastAPI:
    """The service's app for ``settings`` (default: from the environment).

    ``cache_factory`` / ``limiter_factory`` build the recommendation cache and the rate
    limiter from the settings (default: :func:`reco.service.cache.cache_for` and
    :func:`reco.service.ratelimit.rate_limiter_for`); pass others to embed the app.
    """
    settings = settings or Settings()
    metrics = ServiceMetrics()
    balance = (
        balance_for(settings.service.workers) if settings.service.balance_connections else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await run_in_threadpool(
            build_state, settings, metrics, cache_factory, limiter_factory
        )
        app.state.service = state
        for watcher in state.watchers:
            watcher.start()
        if state.events is not None:
            state.events.start()
        balancing = None
        if balance is not None:
            balancing = asyncio.create_task(balance.open().keep_fresh())
        try:
            yield
        finally:
            if balancing is not None:
                balancing.cancel()
                balance.close()
            await run_in_threadpool(state.close)
            metrics.worker_exited()

    app = FastAPI(
        title="reco",
        version=getattr(reco, "__version__", "0"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_handlers(app)
    for module in (recommendations, events, users, items, models, health):
        app.include_router(module.router)
    if settings.service.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.service.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Model-Version", "Retry-After"],
        )
    # Added last, so outermost: it sees (and logs) every request, CORS preflights too.
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        max_body_bytes=settings.service.max_body_bytes,
        balance=balance,
    )
    _document_problems(app)
    return app


def build_state(
    settings: Settings,
    metrics: ServiceMetrics,
    cache_factory: CacheFactory | None = None,
    limiter_factory: LimiterFactory | None = None,
) -> ServiceState:
    """Open the store, load the current model, build cache, limiter and watchers."""
    from reco.events import EventsRuntime
    from reco.service.batching import BatchScorer
    from reco.service.cache import cache_for
    from reco.service.new_items import NewItems
    from reco.service.online import OnlineView
    from reco.service.ratelimit import rate_limiter_for
    from reco.service.recommending import forget_answers
    from reco.store.db import open_store
    from reco.store.events import watermark as store_watermark

    engine = open_store(settings.resolved_database_url)
    try:
        catalog = CatalogState(engine)
        catalog.refresh()
        # Cached answers depend on the new items only when answers can hold them.
        share = settings.service.new_items_share
        new_items = NewItems(
            engine,
            lambda: holder.current,
            on_change=catalog.set_new_items if share > 0 else None,
        )

        def swapped(previous: LoadedModel | None, loaded: LoadedModel) -> None:
            metrics.set_model(previous.version if previous else None, loaded.version)
            try:
                new_items.refresh()  # the new version's vocabulary decides what is new
            except Exception:  # the watcher below tries again within a second
                log.exception("new items for model version %s not computed yet", loaded.version)

        holder = ModelHolder(settings, engine, on_swap=swapped)
        holder.load_initial()
        cache = (cache_factory or cache_for)(settings)
        limiter = (limiter_factory or rate_limiter_for)(settings)
        built: list[ServiceState] = []  # the processor's hook needs the state built below
        # Events stored before this worker started were in every answer it computed
        # (they are read from the store): replaying them changes no cached answer.
        backlog = store_watermark(engine)

        def changed(user_ids: Sequence[str]) -> None:
            if built and runtime.processed_through() > backlog:
                forget_answers(built[0], user_ids)

        runtime = EventsRuntime.from_settings(settings, engine, on_users=changed)
    except BaseException:
        engine.dispose()
        raise
    service = settings.service
    watchers = [
        PeriodicTask("reco-model-watcher", service.reload_check_seconds, holder.check),
        PeriodicTask("reco-catalog-refresh", service.catalog_refresh_seconds, catalog.refresh),
        PeriodicTask(
            "reco-new-items-refresh",
            service.catalog_refresh_seconds,
            new_items.refresh,
        ),
    ]
    state = ServiceState(
        settings=settings,
        engine=engine,
        holder=holder,
        catalog=catalog,
        cache=cache,
        limiter=limiter,
        metrics=metrics,
        watchers=watchers,
        events=runtime,
        online=OnlineView(settings.events, runtime),
        new_items=new_items,
        scorer=BatchScorer(observe=metrics.scoring_batch_rows.observe),
    )
    built.append(state)
    return state


def _document_problems(app: FastAPI) -> None:
    """Add the problem+json schema the routes' error answers refer to, and the API key
    schemes to the operations that take a key (the routes read the headers themselves,
    :mod:`reco.service.deps`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["ProblemDetails"] = (
                ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            components["securitySchemes"] = {k: dict(v) for k, v in SECURITY_SCHEMES.items()}
            # An operation that can answer 401 is one that takes a key.
            either = [{name: []} for name in SECURITY_SCHEMES]
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = either
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
