"""The ranker compiled for serving scores and ranks as LightGBM's predictor does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reco.pipeline.ranker import Ranker


def compiled_copy(ranker: Ranker) -> Ranker:
    """A compiled ranker over the same trees (the shared fixture stays uncompiled)."""
    copy = Ranker.from_string(ranker.to_string(), ranker.feature_names)
    copy.compile()
    return copy


def test_compiled_trees_score_the_candidates_as_lightgbm_does(fitted, everyone):
    pipeline = fitted.pipeline
    block = everyone.take(np.arange(120))
    blocked = np.zeros((block.n_rows, block.n_items), dtype=bool)
    candidates = pipeline.generator.generate(
        block, [{}] * block.n_rows, blocked, block.last_times()
    )
    features = candidates.features
    assert np.isnan(features).any()  # missing values take the trees' default branches
    compiled = compiled_copy(pipeline.ranker)
    assert compiled.compiled and not pipeline.ranker.compiled
    expected = pipeline.ranker.predict(features)
    np.testing.assert_allclose(compiled.predict(features), expected, rtol=0, atol=1e-9)
    assert len(compiled.predict(features[:0])) == 0


def test_a_pipeline_with_the_compiled_ranker_recommends_the_same_items(fitted, everyone):
    pipeline = fitted.pipeline
    served = replace(pipeline, ranker=compiled_copy(pipeline.ranker), _derived={})
    block = everyone.take(np.arange(60))
    ours, theirs = served.recommend(block, 10), pipeline.recommend(block, 10)
    np.testing.assert_array_equal(ours.items, theirs.items)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=0, atol=1e-6)
