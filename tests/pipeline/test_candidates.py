"""Candidate generation: top-k, row-independent sources, merged candidates, features."""

from __future__ import annotations

import numpy as np

from reco.models.base import top_n
from reco.pipeline.candidates import CandidateGenerator, top_k
from reco.pipeline.filters import Filters, blocked
from reco.pipeline.sources import user_contexts


def test_top_k_matches_the_models_top_n():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 300)).astype(np.float32)
    scores[:, :40] = 0.0  # many ties, as sparse scores have
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0] = -np.inf
    for k in (1, 20, 299, 400):
        a_items, a_scores = top_n(scores, k)
        b_items, b_scores = top_k(scores, k)
        # Same scores in the same order; tied items at the cut may differ.
        np.testing.assert_array_equal(a_scores, b_scores)
        assert ((a_items >= 0) == (b_items >= 0)).all()


def test_top_k_is_the_full_sort_with_lower_index_first_on_ties():
    rng = np.random.default_rng(1)
    # Rounded scores tie often; a row of zeros with few positives puts the cut in a run.
    scores = np.round(rng.random((30, 997)), 2).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[5] = 0.0
    scores[5, [3, 500, 900]] = 1.0
    scores[6, 10:] = -np.inf
    for k in (1, 7, 60, 996, 1200):
        items, values = top_k(scores, k)
        for row in range(scores.shape[0]):
            finite = np.flatnonzero(np.isfinite(scores[row]))
            expected = finite[np.lexsort((finite, -scores[row, finite]))][:k]
            assert items[row, : len(expected)].tolist() == expected.tolist()
            assert (items[row, len(expected) :] == -1).all()
            np.testing.assert_array_equal(values[row, : len(expected)], scores[row, expected])


def test_popularity_is_ranked_once_and_matches_scoring_every_row(fitted, everyone):
    generator = fitted.pipeline.generator
    rows = everyone.take(np.arange(60))
    banned = blocked(
        generator.catalog,
        fitted.pipeline.items,
        rows,
        [Filters(exclude_categories=("books",))] * rows.n_rows,
        exclude_seen=True,
    )
    contexts = user_contexts(generator.sources, rows.users, None)
    for name in ("popularity", "trending"):
        fast_items, fast_scores = generator.source_top(name, rows, contexts, banned, 30)
        slow = generator._masked(name, rows.matrix, rows.users, contexts, banned)
        _slow, slow_scores = top_k(slow, 30)
        np.testing.assert_array_equal(fast_scores, slow_scores)
        assert not banned[np.repeat(np.arange(60), 30), fast_items.ravel()].any()


def test_candidates_merge_every_source_and_carry_features(fitted, everyone):
    generator = fitted.pipeline.generator
    rows = everyone.take(np.arange(20))
    banned = blocked(generator.catalog, None, rows, [Filters()] * 20, exclude_seen=True)
    contexts = user_contexts(generator.sources, rows.users, None)
    found = generator.generate(rows, contexts, banned, rows.last_times(), also_top=5)
    keys = found.rows * rows.n_items + found.items
    assert (np.diff(keys) > 0).all()  # sorted, no pair twice
    assert not banned[found.rows, found.items].any()
    assert found.features.shape == (len(found.rows), len(generator.feature_names))
    names = generator.feature_names
    ranks = found.features[:, [names.index(f"{s}_rank") for s in generator.sources]]
    # every candidate was proposed by at least one source, and its primary source did
    assert (~np.isnan(ranks)).any(axis=1).all()
    n_sources = found.features[:, names.index("n_sources")]
    assert (n_sources == (~np.isnan(ranks)).sum(axis=1)).all()
    for name, top in found.source_tops.items():
        assert top.shape == (20, 5)
        for r in range(20):
            proposed = set(found.items[found.rows == r])
            assert set(top[r][top[r] >= 0]) <= proposed or generator.quotas[name] < 5


def test_scored_history_scores_each_row_from_its_latest_items_only(fitted, everyone):
    pipeline = fitted.pipeline
    limit = 10  # well below the default, so the pipeline's own generator scores more
    assert pipeline.config.scored_history is None or pipeline.config.scored_history > 50
    capped = pipeline.config.model_copy(update={"scored_history": limit})
    generator = CandidateGenerator(pipeline.sources, capped, pipeline.catalog)
    rows = everyone.take(np.arange(30))
    lengths = rows.lengths()
    assert (lengths > limit).any() and (lengths <= limit).any()
    banned = blocked(generator.catalog, None, rows, [Filters()] * 30, exclude_seen=True)
    contexts = user_contexts(generator.sources, rows.users, None)
    latest = rows.recent(limit)
    for name in ("ease", "itemknn"):
        capped_top = generator.source_top(name, rows, contexts, banned, 20)
        from_latest = top_k(generator._masked(name, latest, rows.users, contexts, banned), 20)
        np.testing.assert_array_equal(capped_top[0], from_latest[0])
        full_top = pipeline.generator.source_top(name, rows, contexts, banned, 20)
        # Rows within the limit score exactly as with more; longer ones differ somewhere.
        short = lengths <= limit
        np.testing.assert_array_equal(capped_top[0][short], full_top[0][short])
        assert (capped_top[0][~short] != full_top[0][~short]).any()
    # Every seen item stays filtered, also those beyond the scored ones.
    found = generator.generate(rows, contexts, banned, rows.last_times())
    assert not rows.matrix[found.rows, found.items].any()


def test_source_and_recency_features_are_the_scores_of_separate_calls(fitted, everyone):
    # Recent sources score the rows and their suffixes in one call; each feature must
    # still be what scoring the rows, or one suffix, alone gives.
    generator = fitted.pipeline.generator
    assert generator.recent_sources and generator.config.recent_lengths
    rows = everyone.take(np.arange(25))
    banned = blocked(generator.catalog, None, rows, [Filters()] * 25, exclude_seen=True)
    contexts = user_contexts(generator.sources, rows.users, None)
    found = generator.generate(rows, contexts, banned, rows.last_times())
    names = generator.feature_names

    def column(name: str) -> np.ndarray:
        return found.features[:, names.index(name)]

    for name in generator.recent_sources:
        alone = generator._masked(name, rows.matrix, rows.users, contexts, banned)
        expected = alone[found.rows, found.items]
        np.testing.assert_allclose(
            column(f"{name}_score"), np.where(np.isfinite(expected), expected, np.nan), rtol=1e-6
        )
        no_context = [{}] * rows.n_rows
        for length in generator.config.recent_lengths:
            suffix = generator._masked(name, rows.recent(length), rows.users, no_context, banned)
            expected = suffix[found.rows, found.items]
            np.testing.assert_allclose(
                column(f"{name}_last{length}"),
                np.where(np.isfinite(expected), expected, np.nan),
                rtol=1e-6,
            )
