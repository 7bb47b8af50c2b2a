"""Concurrent recommendation requests scored together, in one pipeline call.

Scoring one history row costs a few milliseconds, most of it fixed per call (Python,
scipy and LightGBM overhead around small arrays); scoring 16 rows in one call costs
little more than scoring one. Under load a worker has several requests waiting for
the pipeline at once, so :class:`BatchScorer` hands them to one scoring thread that
takes everything queued when it is free and scores it as one batch. Nothing waits
on purpose: a lone request is scored at once, and batches form only while the
scorer is busy, so latency never grows to fill a batch.

Requests share a batch when they use the same pipeline object (model version and
online trending view), ask for the same ``n`` and the same restriction mask; rows
are independent in the pipeline, so a row's answer does not depend on its batch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reco.pipeline.filters import Filters
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import Pipeline, Recommendation

log = logging.getLogger(__name__)

# Rows per pipeline call: enough for every connection of a loaded worker, small
# enough that one batch's dense scores stay a few megabytes.
MAX_BATCH_ROWS = 32


@dataclass(eq=False)
class _Job:
    pipeline: Pipeline
    histories: Histories
    n: int
    context: Mapping[str, Any]
    filters: Filters
    allowed: np.ndarray | None
    done: Future = field(default_factory=Future)

    def joins(self, first: _Job) -> bool:
        """Whether this job can be scored in one call with ``first``."""
        return (
            self.pipeline is first.pipeline and self.n == first.n and self.allowed is first.allowed
        )


class BatchScorer:
    """One scoring thread per worker process, fed by the request threads.

    :meth:`recommend` blocks its caller until its row is scored and returns that
    row's recommendations, or raises what scoring it alone raised. ``observe`` is
    called with the rows of every batch scored (a metric).
    """

    def __init__(
        self,
        max_rows: int = MAX_BATCH_ROWS,
        *,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.max_rows = max_rows
        self.observe = observe
        self._queue: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def recommend(
        self,
        pipeline: Pipeline,
        histories: Histories,
        n: int,
        *,
        context: Mapping[str, Any],
        filters: Filters,
        allowed: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """The top-``n`` recommendations of ``histories`` (one row)."""
        if histories.n_rows != 1:
            raise ValueError(f"one history row per request, got {histories.n_rows}")
        job = _Job(pipeline, histories, n, context, filters, allowed)
        with self._ready:
            if self._closed:
                raise RuntimeError("the batch scorer is closed")
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reco-batch-scorer", daemon=True
                )
                self._thread.start()
            self._ready.notify()
        return job.done.result()

    def close(self) -> None:
        """Stop the scoring thread once the queued requests are answered."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    # -- the scoring thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                batch = self._take()
            self._score(batch)

    def _take(self) -> list[_Job]:
        """The oldest job and the queued jobs that can join it (order kept for the rest)."""
        first = self._queue.popleft()
        batch, others = [first], deque()
        while self._queue and len(batch) < self.max_rows:
            job = self._queue.popleft()
            (batch if job.joins(first) else others).append(job)
        others.extend(self._queue)
        self._queue = others
        return batch

    def _score(self, batch: list[_Job]) -> None:
        try:
            found = _recommend_rows(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].done.set_exception(exc)
                return
            # One row's bad input (say, a context value) must not fail the others:
            # each row again on its own, each with its own answer or error.
            for job in batch:
                self._score([job])
            return
        if self.observe is not None:
            self.observe(len(batch))
        for job, row in zip(batch, found, strict=True):
            job.done.set_result(row)


def _recommend_rows(batch: list[_Job]) -> list[list[Recommendation]]:
    first = batch[0]
    histories = Histories.stack([job.histories for job in batch])
    result = first.pipeline.recommend(
        histories,
        first.n,
        contexts=[job.context for job in batch],
        filters=[job.filters for job in batch],
        allowed=first.allowed,
        threads=1,
    )
    return first.pipeline.to_external(result)
