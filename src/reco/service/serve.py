"""Run the service under uvicorn (what `reco serve` does).

Secure by default: the service refuses to start when it would listen beyond loopback
with auth disabled, or with no active API key to authenticate anyone. Every worker
scores with one BLAS / OpenMP thread (many small products: threads only fight over
the cores), and with several workers Prometheus metrics go through a fresh shared
folder so that ``/metrics`` adds up every worker, and another holds the workers'
connection counts (:mod:`reco.service.balance`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from reco.config import Settings
from reco.service.balance import BALANCE_DIR_ENV
from reco.service.logs import log_config
from reco.service.metrics import MULTIPROC_ENV

APP_FACTORY = "reco.service.app:create_app"
# Set before any worker imports numpy, scipy or LightGBM.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
REFUSED = 2  # exit code when the configuration is unsafe to serve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why the service will not start, and how to fix it."""

    message: str


def is_loopback(host: str) -> bool:
    """True when ``host`` only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(settings: Settings) -> Refusal | None:
    """A refusal when serving on ``settings.service.host`` would be unsafe, else None."""
    service = settings.service
    if is_loopback(service.host):
        return None
    if not service.auth_enabled:
        return Refusal(
            f"refusing to serve on {service.host} with auth disabled: anyone who reaches "
            "that address could read and change everything. Enable auth "
            "(RECO_SERVICE__AUTH_ENABLED=true) or bind to 127.0.0.1."
        )
    from reco.service.keys import has_active_keys
    from reco.store.db import open_store

    engine = open_store(settings.resolved_database_url)
    try:
        if not has_active_keys(engine):
            return Refusal(
                f"refusing to serve on {service.host}: the store has no active API key, so "
                "no one could use the service. Create one first: "
                "`reco keys create --name NAME --role admin`."
            )
    finally:
        engine.dispose()
    return None


def multi_worker_warning(settings: Settings) -> str | None:
    """A warning when several workers would each keep a private answer cache."""
    service = settings.service
    if service.workers > 1 and service.cache_enabled and not settings.redis_url:
        return (
            f"{service.workers} workers each cache answers in their own memory: after an "
            "event or a user change reaches one worker, another may serve that user's "
            f"earlier answer for up to {service.cache_ttl_seconds:g} s. Set RECO_REDIS_URL "
            "(shared cache, invalidated everywhere) or RECO_SERVICE__CACHE_ENABLED=false."
        )
    return None


def single_threaded_math():
    """One BLAS / OpenMP thread per worker, set in the environment workers inherit and
    in the libraries this process already loaded (a single worker runs in it).
    Returns the threadpoolctl limiter (``restore_original_limits()`` undoes it)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def run(settings: Settings) -> None:
    """Serve until interrupted (uvicorn with ``settings.service`` host, port, workers)."""
    import uvicorn

    service = settings.service
    single_threaded_math()
    metrics_dir = balance_dir = None
    if service.workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="reco-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        balance_dir = tempfile.mkdtemp(prefix="reco-balance-")
        os.environ[BALANCE_DIR_ENV] = balance_dir
    # The workers read their settings from the environment: hand the overrides on.
    os.environ["RECO_SERVICE__HOST"] = service.host
    os.environ["RECO_SERVICE__PORT"] = str(service.port)
    os.environ["RECO_SERVICE__WORKERS"] = str(service.workers)
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=service.host,
            port=service.port,
            workers=service.workers,
            log_config=log_config(),
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        for folder in (metrics_dir, balance_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
