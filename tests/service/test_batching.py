"""The batch scorer: concurrent requests scored in one pipeline call, each row's answer
the same as scoring it alone, one bad row failing alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reco.config import Settings
from reco.pipeline.filters import Filters
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import Pipeline
from reco.service.batching import BatchScorer
from reco.training.job import load_current


@pytest.fixture(scope="module")
def pipeline(trained_home) -> Pipeline:
    return load_current(Settings(home=trained_home.path))[1].pipeline


class CountingPipeline:
    """The real pipeline, recording the rows of each call; the first call waits for
    ``release`` so that the next requests queue up behind it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.calls: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def recommend(self, histories, n, **kwargs):
        self.calls.append(histories.n_rows)
        self.started.set()
        self.release.wait(timeout=30)
        return self.pipeline.recommend(histories, n, **kwargs)

    def to_external(self, result):
        return self.pipeline.to_external(result)


def _alone(pipeline: Pipeline, row: int, n: int, filters: Filters):
    result = pipeline.recommend(pipeline.history.take([row]), n, filters=filters, threads=1)
    return pipeline.to_external(result)[0]


def test_queued_requests_are_scored_together_with_the_same_answers(pipeline: Pipeline):
    counting = CountingPipeline(pipeline)
    scorer = BatchScorer()
    rows = list(range(1, 9))
    filters = [Filters(), Filters(exclude_categories=("Drama",))] * 4
    try:
        with ThreadPoolExecutor(max_workers=len(rows) + 1) as pool:
            first = pool.submit(
                scorer.recommend,
                counting,
                pipeline.history.take([0]),
                10,
                context={},
                filters=Filters(),
            )
            assert counting.started.wait(timeout=30)
            waiting = [
                pool.submit(
                    scorer.recommend,
                    counting,
                    pipeline.history.take([row]),
                    10,
                    context={},
                    filters=rule,
                )
                for row, rule in zip(rows, filters, strict=True)
            ]
            # Let the queue fill while the scorer is busy with the first request.
            deadline = time.monotonic() + 30
            while len(scorer._queue) < len(rows) and time.monotonic() < deadline:
                time.sleep(0.01)
            counting.release.set()
            answers = [job.result(timeout=60) for job in waiting]
            first.result(timeout=60)
    finally:
        scorer.close()
    assert counting.calls == [1, len(rows)]
    for row, rule, answer in zip(rows, filters, answers, strict=True):
        assert answer == _alone(pipeline, row, 10, rule)


def test_requests_for_different_n_are_not_mixed(pipeline: Pipeline):
    scorer = BatchScorer()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            jobs = {
                n: pool.submit(
                    scorer.recommend,
                    pipeline,
                    pipeline.history.take([n]),
                    n,
                    context={},
                    filters=Filters(),
                )
                for n in (3, 5, 7, 9)
            }
            for n, job in jobs.items():
                assert len(job.result(timeout=60)) == n
    finally:
        scorer.close()


def test_a_bad_row_fails_alone(pipeline: Pipeline):
    counting = CountingPipeline(pipeline)
    counting.release.set()
    scorer = BatchScorer()
    histories = pipeline.history.take([1])
    # A new user: the cold route reads the context whatever route warm users take.
    newcomer = Histories.empty(1, len(pipeline.items), users=np.array([-1]))
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            good = pool.submit(
                scorer.recommend, counting, histories, 5, context={}, filters=Filters()
            )
            bad = pool.submit(
                scorer.recommend,
                counting,
                newcomer,
                5,
                context={"age": "old"},
                filters=Filters(),
            )
            assert len(good.result(timeout=60)) == 5
            with pytest.raises(ValueError):
                bad.result(timeout=60)
    finally:
        scorer.close()


def test_one_row_per_request_and_no_requests_after_close(pipeline: Pipeline):
    scorer = BatchScorer()
    with pytest.raises(ValueError, match="one history row"):
        scorer.recommend(pipeline, pipeline.history.take([0, 1]), 5, context={}, filters=Filters())
    scorer.close()
    with pytest.raises(RuntimeError, match="closed"):
        scorer.recommend(pipeline, pipeline.history.take([0]), 5, context={}, filters=Filters())
