"""`reco worker`: relay and stream processor against Redis Streams, as its own process.

Several workers may run at once (on one machine or many): they relay through one
stream without duplicates and process it as one consumer group, each event applied
once in effect; a worker killed mid-batch leaves its entries pending, and another
claims them after ``RECO_EVENTS__CLAIM_IDLE_MS``.

With ``--retrain-every`` and/or ``--retrain-after-events`` the worker also retrains
(:mod:`reco.training.schedule`), one run at a time, in a background thread; without
Redis such a worker only retrains.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from reco.cli.common import open_settings_store
from reco.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from reco.config import Settings
    from reco.events.processor import UsersHook
    from reco.training.schedule import RetrainScheduler

log = logging.getLogger("reco.worker")

# Exit code when the configuration cannot run a worker (as `reco serve` refusing).
REFUSED = 2


def worker(
    consumer: Annotated[
        str | None,
        typer.Option(help="This worker's name in the consumer group (default: host-pid-random)."),
    ] = None,
    status_every: Annotated[
        float, typer.Option(help="Seconds between progress lines on stderr.", min=0.1)
    ] = 30.0,
    retrain_every: Annotated[
        str | None,
        typer.Option(help="Retrain this often, e.g. 30m, 1h, 1d (default RECO_RETRAIN_EVERY)."),
    ] = None,
    retrain_after_events: Annotated[
        int | None,
        typer.Option(
            help="Retrain once this many events arrived since the newest trained snapshot "
            "(default RECO_RETRAIN_AFTER_EVENTS).",
            min=1,
        ),
    ] = None,
) -> None:
    """Relay stored events to Redis Streams and apply them to the online features,
    and retrain on a schedule when asked.

    Processing events needs RECO_REDIS_URL; a worker with a retrain schedule and no
    Redis only retrains. Stops cleanly on SIGTERM or Ctrl-C (the current batch is
    finished or left pending for another worker; a retrain in progress finishes).
    """
    from reco.events.runtime import EventsRuntime

    logging.getLogger("reco").setLevel(logging.INFO)
    settings, engine = open_settings_store()
    scheduler = _scheduler(settings, engine, retrain_every, retrain_after_events)
    with_events = settings.events.resolved_bus(settings.redis_url) == "redis"
    if not with_events and scheduler is None:
        engine.dispose()
        Console(stderr=True).print(
            "[bold red]error:[/] reco worker processes events from Redis Streams; set "
            "RECO_REDIS_URL (e.g. redis://127.0.0.1:6379/0). With the in-process bus the "
            "service applies events itself. (A worker with --retrain-every or "
            "--retrain-after-events runs without Redis and only retrains.)",
            highlight=False,
        )
        raise typer.Exit(REFUSED)
    runtime = None
    if with_events:
        runtime = EventsRuntime.from_settings(
            settings,
            engine,
            on_users=_cache_invalidator(settings),
            process=True,
            consumer=consumer,
        )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if runtime is not None:
        runtime.start()
    if scheduler is not None:
        scheduler.start()
    name = getattr(runtime.consumer, "name", "?") if runtime is not None else "retrain-only"
    log.info("worker %s started on stream %s", name, settings.events.stream)
    try:
        while not stop.wait(status_every):
            if scheduler is not None:
                log.info(
                    "worker %s: %d retrains, %d failed, %d events since the last trained snapshot",
                    name,
                    scheduler.runs,
                    scheduler.failures,
                    _safe_new_events(scheduler),
                )
            if runtime is None:
                continue
            status = runtime.status()
            log.info(
                "worker %s: published %d, applied %d, stream at %s, group through %s",
                name,
                status.published,
                status.applied,
                status.bus_position,
                status.processed_through,
            )
    finally:
        started = time.monotonic()
        if runtime is not None:
            runtime.stop()
        if scheduler is not None:
            scheduler.stop()
        engine.dispose()
        log.info("worker %s stopped in %.1f s", name, time.monotonic() - started)


def _scheduler(
    settings: Settings, engine: Engine, every: str | None, after_events: int | None
) -> RetrainScheduler | None:
    """The retrain schedule asked for (options, else settings), or None."""
    from reco.training.schedule import RetrainScheduler, parse_duration

    every = every or settings.retrain_every
    after_events = after_events or settings.retrain_after_events
    if every is None and after_events is None:
        return None
    try:
        seconds = parse_duration(every) if every is not None else None
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--retrain-every") from None
    check = min(5.0, seconds) if seconds is not None else 5.0
    return RetrainScheduler(
        settings, engine, every=seconds, after_events=after_events, check_seconds=check
    )


def _safe_new_events(scheduler: RetrainScheduler) -> int:
    try:
        return scheduler.new_events()
    except Exception:  # a status line must not stop the worker
        return -1


def _cache_invalidator(settings: Settings) -> UsersHook | None:
    """Drop the cached recommendations of users whose events were applied: in Redis,
    and through its pub/sub in every service worker's memory; None without a cache.

    One round trip per applied batch
    (:meth:`reco.service.cache.RedisCache.drop_and_announce`). The
    worker serves no answers, so it keeps no memory cache and does not listen to the
    channel itself.
    """
    from reco.service.cache import RedisCache
    from reco.service.ratelimit import redis_from_url

    service = settings.service
    if not service.cache_enabled or not settings.redis_url:
        return None
    client = redis_from_url(settings.redis_url)
    shared = RedisCache(client, service.cache_ttl_seconds)

    def invalidate(users: Sequence[str]) -> None:
        if users:
            shared.drop_and_announce(users)

    return invalidate
