"""`reco worker`: relay and stream processor against Redis Streams, as its own process.

Several workers may run at once (on one machine or many): they relay through one
stream without duplicates and process it as one consumer group, each event applied
once in effect; a worker killed mid-batch leaves its entries pending, and another
claims them after ``RECO_EVENTS__CLAIM_IDLE_MS``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from reco.cli.common import open_settings_store

if TYPE_CHECKING:
    from reco.config import Settings
    from reco.events.processor import UsersHook

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
) -> None:
    """Relay stored events to Redis Streams and apply them to the online features.

    Needs RECO_REDIS_URL. Stops cleanly on SIGTERM or Ctrl-C (the current batch is
    finished or left pending for another worker).
    """
    from reco.events.runtime import EventsRuntime

    logging.getLogger("reco").setLevel(logging.INFO)
    settings, engine = open_settings_store()
    if settings.events.resolved_bus(settings.redis_url) != "redis":
        engine.dispose()
        Console(stderr=True).print(
            "[bold red]error:[/] reco worker processes events from Redis Streams; set "
            "RECO_REDIS_URL (e.g. redis://127.0.0.1:6379/0). With the in-process bus the "
            "service applies events itself.",
            highlight=False,
        )
        raise typer.Exit(REFUSED)
    runtime = EventsRuntime.from_settings(
        settings, engine, on_users=_cache_invalidator(settings), process=True, consumer=consumer
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runtime.start()
    name = getattr(runtime.consumer, "name", "?")
    log.info("worker %s started on stream %s", name, settings.events.stream)
    try:
        while not stop.wait(status_every):
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
        runtime.stop()
        engine.dispose()
        log.info("worker %s stopped in %.1f s", name, time.monotonic() - started)


def _cache_invalidator(settings: Settings) -> UsersHook | None:
    """Drop cached recommendations of users whose events were applied (in Redis, and
    through its pub/sub in every service worker's memory); None without a cache."""
    from reco.service.cache import cache_for

    cache = cache_for(settings)
    if cache is None:
        return None

    def invalidate(users: list[str]) -> None:
        for user in users:
            cache.invalidate_user(user)

    return invalidate
