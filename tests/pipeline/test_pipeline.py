"""The fitted pipeline: routing, filters, explanations, events, batch API, similar items."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from reco.errors import ValidationError
from reco.pipeline.explain import FALLBACK, POPULAR_OVERALL
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import RANKER_MODE, Recommendation, UnknownItemError

N = 10


def test_warm_rows_get_n_unseen_explained_items(fitted, everyone):
    pipeline = fitted.pipeline
    result = pipeline.recommend(everyone, N)
    assert result.items.shape == (everyone.n_rows, N)
    assert (result.items >= 0).all()
    # never an item from the row's own history, never twice in a row
    rows = np.repeat(np.arange(everyone.n_rows), N)
    assert (np.asarray(everyone.matrix[rows, result.items.ravel()]).ravel() == 0).all()
    assert all(len(set(row)) == N for row in result.items.tolist())
    # scores descend, every item has a known source and a reason
    assert (np.diff(result.scores, axis=1) <= 0).all()
    known = set(pipeline.sources) | {FALLBACK}
    assert set(result.sources.ravel()) <= known
    assert all(isinstance(r, str) and r for r in result.reasons.ravel())


def test_explanations_name_a_history_item(fitted, everyone):
    pipeline = fitted.pipeline
    result = pipeline.recommend(everyone.take(np.arange(50)), N)
    reasons = result.reasons.ravel().tolist()
    because = [r for r in reasons if r.startswith("because you watched ")]
    assert because, "collaborative items should name the history item behind them"
    titles = set(pipeline.catalog.titles)
    assert all(r.removeprefix("because you watched ") in titles for r in because)


def test_explanations_name_the_largest_contribution(fitted, everyone):
    """The named item is the history item whose weight x item-kNN similarity towards
    the recommended item is largest (lowest index among equals), read cell by cell."""
    pipeline = fitted.pipeline
    similarity = pipeline.sources["itemknn"].similarity_.toarray()
    block = everyone.take(np.arange(40))
    pairs_rows = np.repeat(np.arange(block.n_rows), 5)
    pairs_items = np.tile(np.arange(5), block.n_rows) * 7 + pairs_rows % 3
    sources = np.full(len(pairs_rows), "itemknn", dtype=object)
    reasons = pipeline.explainer.explain(block, pairs_rows, pairs_items, sources, [{}] * 40)
    weights = block.matrix.toarray()
    template = pipeline.config.explain_history_template
    for row, item, reason in zip(pairs_rows, pairs_items, reasons, strict=True):
        contributions = weights[row] * similarity[:, item]
        if (contributions > 0).any():
            best = int(np.argmax(contributions))
            assert reason == template.format(title=pipeline.catalog.titles[best])
        else:
            assert not reason.startswith("because")


def test_short_histories_take_the_cold_route(fitted, everyone):
    config = fitted.pipeline.config.model_copy(update={"cold_history_threshold": 5})
    pipeline = replace(fitted.pipeline, config=config, _derived={})
    threshold = pipeline.cold_threshold
    short = np.flatnonzero((everyone.lengths() > 0) & (everyone.lengths() < threshold))
    long = np.flatnonzero(everyone.lengths() >= threshold)
    assert len(short) and len(long)
    cold = pipeline.recommend(everyone.take(short), N)
    assert set(cold.sources.ravel()) <= {"segment_popularity", "trending", "popularity"}
    seen = np.asarray(
        everyone.take(short).matrix[np.repeat(np.arange(len(short)), N), cold.items.ravel()]
    )
    assert (seen == 0).all()  # the few items they have are still never recommended
    warm = pipeline.recommend(everyone.take(long[:20]), N)
    assert set(warm.sources.ravel()) & {"ease", "itemknn", "als", "content"}


def test_cold_users_get_context_popularity_explained(fitted):
    # Segment popularity alone (no trending in the blend): reasons name the segment.
    config = fitted.pipeline.config.model_copy(update={"cold_trending_weight": 0.0})
    pipeline = replace(fitted.pipeline, config=config, _derived={})
    contexts = [{"device": "mobile", "country": "DE"}, {}, {"age_band": "18-24"}]
    out = pipeline.recommend_users(["new-1", "new-2", "new-3"], N, contexts=contexts)
    assert [len(recs) for recs in out] == [N, N, N]
    for recs in out:
        assert {r.source for r in recs} <= {"segment_popularity", "popularity"}
    reasons = {r.explanation for r in out[0]}
    assert any("popular" in r and ("mobile" in r or "DE" in r) for r in reasons)
    assert all(r.explanation == POPULAR_OVERALL for r in out[1])
    # context changes the answer
    assert [r.item_id for r in out[0]] != [r.item_id for r in out[1]]


def test_the_cold_threshold_was_chosen_on_validation(fitted):
    routing = fitted.selection.cold_route["threshold"]
    measured = routing["ndcg@10"]
    assert measured and all(set(v) == {"warm", "cold"} for v in measured.values())
    chosen = routing["chosen"]
    assert fitted.pipeline.config.cold_history_threshold == chosen
    # from the chosen length on, the warm route wins at every measured length
    assert all(v["warm"] >= v["cold"] for k, v in measured.items() if int(k) >= chosen)


def test_the_cold_blend_weight_was_chosen_on_held_out_users(fitted):
    route = fitted.selection.cold_route
    assert route["held_out_users"] > 0
    assert set(route["ndcg@10"]) == {"0.0", "0.1", "0.2", "0.3", "0.5"}
    assert route["ndcg@10"][str(route["chosen"])] == max(route["ndcg@10"].values())
    assert fitted.pipeline.config.cold_trending_weight == route["chosen"]
    config = fitted.pipeline.config.model_copy(update={"cold_trending_weight": 0.5})
    blended = replace(fitted.pipeline, config=config, _derived={})
    [recs] = blended.recommend_users(["new"], N, contexts=[{"device": "mobile"}])
    assert "trending" in {r.source for r in recs}
    assert "trending this week" in {r.explanation for r in recs}


def test_filters_are_honoured(fitted, shop):
    pipeline = fitted.pipeline
    user = str(shop.users.ids[0])
    seen = set(shop.items.ids[shop.item_idx[shop.user_idx == 0]])
    [books] = pipeline.recommend_users([user], N, filters={"include_categories": ["books"]})
    categories = dict(
        zip(shop.item_features["item_id"], shop.item_features["categories"], strict=True)
    )
    assert books and all("books" in categories[r.item_id] for r in books)
    [plain] = pipeline.recommend_users([user], N)
    banned = plain[0].item_id
    [without] = pipeline.recommend_users([user], N, filters={"exclude_items": [banned]})
    assert banned not in {r.item_id for r in without}
    assert not seen & {r.item_id for r in plain}
    [again] = pipeline.recommend_users([user], 50, filters={"exclude_seen": False})
    assert len(again) == 50


def test_a_new_event_counts_at_once(fitted, shop):
    pipeline = fitted.pipeline
    user = str(shop.users.ids[3])
    [before] = pipeline.recommend_users([user], N)
    bought = before[0].item_id
    events = pd.DataFrame(
        {"user_id": [user], "item_id": [bought], "timestamp": [pipeline.data_end + 60]}
    )
    [after] = pipeline.recommend_users([user], N, events=events)
    assert bought not in {r.item_id for r in after}
    assert [r.item_id for r in after] != [r.item_id for r in before]


def test_unknown_users_with_events_are_served_from_them(fitted, shop):
    pipeline = fitted.pipeline
    items = [str(i) for i in shop.items.ids[:3]]
    events = pd.DataFrame({"user_id": ["stranger"] * 3, "item_id": items})
    [recs] = pipeline.recommend_users(["stranger"], N, events=events)
    assert len(recs) == N and not set(items) & {r.item_id for r in recs}
    assert all(isinstance(r, Recommendation) for r in recs)


def test_fallback_fills_when_filters_leave_few_items(fitted, everyone):
    pipeline = fitted.pipeline
    # Allow only 15 popular items: the sources cannot fill 10 for everyone, the fill can.
    allowed = np.zeros(len(pipeline.items), dtype=bool)
    allowed[pipeline.fallback_order[:15]] = True
    result = pipeline.recommend(everyone.take(np.arange(20)), N, allowed=allowed)
    valid = result.items >= 0
    assert allowed[result.items[valid]].all()
    assert (result.scores[valid] > -np.inf).all()


def test_served_single_source_is_that_source_alone(fitted, everyone):
    pipeline = replace(fitted.pipeline, mode="itemknn", _derived={})
    warm = everyone.lengths() >= pipeline.cold_threshold
    rows = everyone.take(np.flatnonzero(warm)[:30])
    result = pipeline.recommend(rows, N)
    own, _ = pipeline.sources["itemknn"].recommend(rows.matrix, N)
    assert (result.items == own).all()
    assert set(result.sources.ravel()) == {"itemknn"}


def test_diversity_and_exploration_change_lists_when_on(fitted, everyone):
    rows = everyone.take(np.arange(40))
    base = fitted.pipeline.recommend(rows, N)
    config = fitted.pipeline.config.model_copy(
        update={"diversity": 0.5, "exploration_share": 0.2, "new_item_days": 60.0}
    )
    varied = replace(fitted.pipeline, config=config, _derived={})
    out = varied.recommend(rows, N)
    assert (out.items != base.items).any()
    assert (out.items >= 0).all()
    assert all(len(set(row)) == N for row in out.items.tolist())
    assert "exploration" in set(out.sources.ravel())
    assert (np.diff(out.scores, axis=1) <= 0).all()


def test_similar_items_and_unknown_item(fitted, shop):
    pipeline = fitted.pipeline
    item = str(shop.items.ids[5])
    found = pipeline.similar_items(item, 5)
    assert len(found) == 5 and item not in {r.item_id for r in found}
    assert all(r.source in ("itemknn", "content") for r in found)
    with pytest.raises(UnknownItemError, match=r"unknown item .no-such-item."):
        pipeline.similar_items("no-such-item")


def test_bad_requests_are_clear(fitted, everyone):
    pipeline = fitted.pipeline
    with pytest.raises(ValueError, match="n must be at least 1"):
        pipeline.recommend(everyone, 0)
    with pytest.raises(ValidationError, match="must not repeat"):
        pipeline.recommend_users(["a", "a"], 3)
    with pytest.raises(ValueError, match="item columns"):
        pipeline.recommend(Histories.empty(1, 3), 3)


def test_mode_is_the_ranker_here(fitted):
    assert fitted.pipeline.mode == RANKER_MODE
    assert fitted.selection.chosen == "pipeline"
