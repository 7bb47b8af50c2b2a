"""Prometheus metrics of one app.

Every app gets its own :class:`CollectorRegistry` (tests build many apps in one
process). With several uvicorn workers, ``reco serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start: each
worker then writes its values to files there and ``/metrics`` aggregates all of
them, so a scrape sees the whole server whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


def multiprocess_dir() -> str | None:
    """The folder shared by the workers' metric files, when running several."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


class ServiceMetrics:
    """The service's metrics (names below are what a scrape shows)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.request_seconds = Histogram(
            "reco_http_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "reco_http_requests",
            "Requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.recommended_items = Counter(
            "reco_recommended_items",
            "Items returned in recommendation answers, by the source that proposed them.",
            ["source"],
            registry=registry,
        )
        self.recommendations = Counter(
            "reco_recommendations",
            "Recommendation answers, by kind (known, cold, anonymous, rerank, similar).",
            ["kind"],
            registry=registry,
        )
        self.scoring_batch_rows = Histogram(
            "reco_scoring_batch_rows",
            "Uncached recommendation requests scored together in one pipeline call.",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=registry,
        )
        self.cache_lookups = Counter(
            "reco_cache_lookups",
            "Recommendation cache lookups, by result (hit or miss).",
            ["result"],
            registry=registry,
        )
        self.events_accepted = Counter(
            "reco_events_accepted", "Events stored through POST /v1/events.", registry=registry
        )
        self.events_duplicate = Counter(
            "reco_events_duplicate",
            "Events sent again (same event id or content) and skipped.",
            registry=registry,
        )
        self.errors = Counter(
            "reco_errors",
            "Error answers, by problem type.",
            ["type"],
            registry=registry,
        )
        self.model_reloads = Counter(
            "reco_model_reloads",
            "Model version swaps in this worker.",
            registry=registry,
        )
        self.model_info = Gauge(
            "reco_model_info",
            "1 for the model version a worker serves (0 for versions it served before).",
            ["version"],
            registry=registry,
            multiprocess_mode="liveall",
        )

    def set_model(self, previous: str | None, version: str) -> None:
        """Record a model swap."""
        if previous is not None and previous != version:
            self.model_info.labels(previous).set(0)
        self.model_info.labels(version).set(1)
        self.model_reloads.inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format (all workers' values in multiprocess mode)."""
        folder = multiprocess_dir()
        if folder:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=folder)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def worker_exited() -> None:
        """Drop this process's live gauges from the shared folder (at shutdown)."""
        if multiprocess_dir():
            multiprocess.mark_process_dead(os.getpid())
