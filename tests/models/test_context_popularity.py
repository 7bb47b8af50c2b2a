"""Segment (context) popularity and trending: the maths, contexts, explanations, edges."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.data.movielens import load_movielens
from reco.errors import ConfigurationError, NotApplicableError
from reco.evaluation import metrics
from reco.models import load_model
from reco.models.context_popularity import (
    SegmentPopularityRecommender,
    TrendingRecommender,
    age_band_labels,
    segment_phrase,
)
from reco.models.popularity import PopularityRecommender

DAY = 86_400
NOW = 1_700_000_000


def shop() -> Dataset:
    """Women (f*) all take 'dress', men (m*) all take 'drill'; everyone takes 'bread'.

    6 women, 4 men; 'bread' is the global hit (10), then dress (6), drill (4).
    """
    rows = [(f"f{u}", "dress", NOW - u) for u in range(6)]
    rows += [(f"m{u}", "drill", NOW - u) for u in range(4)]
    rows += [(u, "bread", NOW - 100) for u in [*(f"f{u}" for u in range(6)), "m0", "m1"]]
    rows += [("m2", "bread", NOW - 100), ("m3", "bread", NOW - 100)]
    users = pd.DataFrame(
        {
            "user_id": [*(f"f{u}" for u in range(6)), *(f"m{u}" for u in range(4))],
            "gender": ["F"] * 6 + ["M"] * 4,
            "device": ["mobile", "desktop"] * 5,
        }
    )
    return Dataset.from_frames(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), users=users
    )


def empty_rows(n: int, n_items: int) -> csr_matrix:
    return csr_matrix((n, n_items), dtype=np.float32)


def item(data: Dataset, external: str) -> int:
    return data.items.index_of(external)


# -- segment popularity: learning -----------------------------------------------------


def test_segment_share_is_shrunk_towards_global_by_segment_size() -> None:
    data = shop()
    model = SegmentPopularityRecommender(attributes=["gender"], shrinkage=2.0).fit(data)
    total = data.n_interactions  # 20
    global_share = data.item_counts() / total
    women = {"dress": 6, "bread": 6, "drill": 0}
    w = 6 / (6 + 2.0)
    scores = model.score_context([{"gender": "F"}], np.arange(data.n_items))[0]
    for name, count in women.items():
        expected = w * count / 12 + (1 - w) * global_share[item(data, name)]
        assert scores[item(data, name)] == pytest.approx(expected, rel=1e-6)
    assert scores.sum() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(model.popularity_, global_share, rtol=1e-6)


def test_no_shrinkage_gives_the_segment_own_popularity_and_large_shrinkage_global() -> None:
    data = shop()
    own = SegmentPopularityRecommender(attributes=["gender"], shrinkage=0.0).fit(data)
    items, _ = own.recommend_context([{"gender": "M"}], 3)
    assert data.items.to_external(items[0])[0] == "drill"
    assert own.score_context([{"gender": "M"}], [item(data, "dress")])[0, 0] == 0.0
    flat = SegmentPopularityRecommender(attributes=["gender"], shrinkage=1e9).fit(data)
    items, _ = flat.recommend_context([{"gender": "M"}], 3)
    assert data.items.to_external(items[0]).tolist() == ["bread", "dress", "drill"]


def test_attributes_are_averaged_and_unknown_ones_count_as_global() -> None:
    data = shop()
    model = SegmentPopularityRecommender(shrinkage=0.0).fit(data)
    assert model.attribute_names_.tolist() == ["gender", "device"]
    everything = np.arange(data.n_items)
    both = model.score_context([{"gender": "F", "device": "mobile"}], everything)[0]
    gender = model.score_context([{"gender": "F"}], everything)[0]
    device = model.score_context([{"device": "mobile"}], everything)[0]
    nothing = model.score_context([{}], everything)[0]
    np.testing.assert_allclose(nothing, model.popularity_, rtol=1e-6)
    np.testing.assert_allclose(both, (gender + device) - nothing, rtol=1e-5, atol=1e-7)


def test_attributes_are_found_automatically() -> None:
    frame = pd.DataFrame(
        {
            "user_id": "u" + pd.Series(range(60)).astype(str),
            "age": [15, 20, 30, 40, 50, 60, 70, 33, 27, 44] * 6,
            "zip": ["55105", "55414", "94043", "T8H1N", "10003", "02138"] * 10,
            "email": [f"user{i}@example.com" for i in range(60)],  # near-unique
            "score": np.linspace(0, 1, 60),  # a plain number
            "plan": ["free"] * 60,  # a single value
            "occupation": ["student", "engineer", None] * 20,
        }
    )
    interactions = pd.DataFrame(
        {"user_id": frame["user_id"], "item_id": ["a", "b", "c"] * 20, "timestamp": NOW}
    )
    data = Dataset.from_frames(interactions, users=frame)
    model = SegmentPopularityRecommender().fit(data)
    assert model.attribute_names_.tolist() == ["age", "zip", "occupation"]
    assert model.attribute_kinds_.tolist() == ["age", "region", "category"]
    labels = set(model.segment_labels_.tolist())
    assert {"under 18", "18-24", "25-34", "65+", "5", "9", "T", "student"} <= labels
    assert model.user_context([0, 2]) == [
        {"age": "under 18", "zip": "5", "occupation": "student"},
        {"age": "25-34", "zip": "9"},
    ]
    named = SegmentPopularityRecommender(attributes=["score", "occupation"]).fit(data)
    assert named.attribute_names_.tolist() == ["occupation"]  # 60 distinct scores: unique


def test_age_band_labels() -> None:
    assert age_band_labels([18, 25, 35, 45, 55, 65]) == [
        "under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+",
    ]  # fmt: skip
    assert age_band_labels([21.5]) == ["under 21.5", "21.5+"]


def test_ages_given_as_text_are_banded_too() -> None:
    users = pd.DataFrame({"user_id": list("abcd"), "age": ["20", "21", "40", " 41 "]})
    interactions = pd.DataFrame({"user_id": list("abcd"), "item_id": list("xxyy")})
    model = SegmentPopularityRecommender().fit(Dataset.from_frames(interactions, users=users))
    assert model.attribute_kinds_.tolist() == ["age"]
    assert sorted(model.segment_labels_.tolist()) == ["18-24", "35-44"]


def test_no_usable_attribute_is_not_applicable() -> None:
    interactions = shop().to_frame()[["user_id", "item_id", "timestamp"]]
    with pytest.raises(NotApplicableError, match="user attributes"):
        SegmentPopularityRecommender().fit(Dataset.from_frames(interactions))
    ids = interactions["user_id"].unique()
    unique_only = pd.DataFrame({"user_id": ids, "email": [f"{u}@x" for u in ids]})
    with pytest.raises(NotApplicableError, match="no usable user attribute"):
        SegmentPopularityRecommender().fit(Dataset.from_frames(interactions, users=unique_only))
    with pytest.raises(NotApplicableError, match="country"):
        SegmentPopularityRecommender(attributes=["country"]).fit(shop())


@pytest.mark.parametrize(
    "params",
    [
        {"shrinkage": -1.0},
        {"shrinkage": float("nan")},
        {"age_bands": []},
        {"age_bands": [30, 20]},
        {"window_days": 0},
        {"attributes": "gender"},
    ],
)
def test_bad_parameters_are_configuration_errors(params: dict) -> None:
    with pytest.raises(ConfigurationError, match="segment_popularity"):
        SegmentPopularityRecommender(**params).fit(shop())


def test_window_counts_only_recent_interactions() -> None:
    data = shop()  # 'bread' was 100 s before the newest event, the rest within 6 s
    recent = SegmentPopularityRecommender(window_days=50 / DAY).fit(data)
    assert recent.popularity_[item(data, "bread")] == 0.0
    assert recent.segment_users_.sum() == 2 * 10  # every user has a recent interaction


# -- segment popularity: which user ---------------------------------------------------


def test_known_users_get_their_segment_even_with_an_empty_history() -> None:
    data = shop()
    model = SegmentPopularityRecommender(attributes=["gender"], shrinkage=0.0).fit(data)
    women, men = data.users.index_of("f0"), data.users.index_of("m0")
    rows = empty_rows(3, data.n_items)
    items, _ = model.recommend(rows, 2, users=np.array([women, men, -1]))
    assert set(data.items.to_external(items[0]).tolist()) == {"dress", "bread"}  # 6 each
    assert data.items.to_external(items[1:, 0]).tolist() == ["drill", "bread"]
    scores = model.score(rows, np.arange(data.n_items), users=np.array([women, men, -1]))
    np.testing.assert_allclose(scores[2], model.popularity_)
    assert scores[1, item(data, "drill")] > scores[1, item(data, "dress")]


def test_segments_are_inferred_from_history_when_the_user_is_unknown() -> None:
    data = shop()
    model = SegmentPopularityRecommender(attributes=["gender"], shrinkage=0.0).fit(data)
    history = empty_rows(1, data.n_items).tolil()
    history[0, item(data, "drill")] = 1.0
    items, _ = model.recommend(csr_matrix(history), 2)
    # Only men take drills: the row is inferred male, and men prefer bread to dress.
    assert data.items.to_external(items[0]).tolist() == ["bread", "dress"]
    scores = model.score(csr_matrix(history), [item(data, "dress")])
    assert scores[0, 0] < 1e-9  # no man took a dress


def test_context_path_equals_the_known_user_path() -> None:
    data = shop()
    model = SegmentPopularityRecommender(shrinkage=1.0).fit(data)
    users = np.arange(data.n_users)
    by_index = model.score(empty_rows(len(users), data.n_items), np.arange(3), users=users)
    contexts = [
        {"gender": g, "device": d}
        for g, d in zip(data.user_features["gender"], data.user_features["device"], strict=True)
    ]
    np.testing.assert_array_equal(model.score_context(contexts, np.arange(3)), by_index)
    np.testing.assert_array_equal(
        model.score_context(model.user_context(users), np.arange(3)), by_index
    )


def test_unseen_values_and_unknown_keys_fall_back_to_global() -> None:
    model = SegmentPopularityRecommender().fit(shop())
    scores = model.score_context(
        [{"gender": "X", "device": "tv", "browser": "lynx"}, {}], np.arange(3)
    )
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_allclose(scores[0], model.popularity_)
    assert (model.context_segments([{"gender": "X"}]) == -1).all()


def test_contexts_read_ages_as_numbers_or_band_labels() -> None:
    frame = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d", "e", "f"], "age": [20, 22, 23, 40, 41, 50]}
    )
    interactions = pd.DataFrame(
        {"user_id": list("abcdef"), "item_id": ["x", "x", "x", "y", "y", "y"], "timestamp": NOW}
    )
    model = SegmentPopularityRecommender(shrinkage=0.0).fit(
        Dataset.from_frames(interactions, users=frame)
    )
    segments = model.context_segments([{"age": "21"}, {"age": 19.5}, {"age": "18-24"}])
    assert len(set(segments[:, 0].tolist())) == 1 and segments[0, 0] >= 0
    with pytest.raises(ValueError, match="age='old'"):
        model.context_segments([{"age": "old"}])
    with pytest.raises(TypeError, match="list of dicts"):
        model.context_segments({"age": "21"})


def test_recommend_context_honours_exclude_candidates_and_pads() -> None:
    data = shop()
    model = SegmentPopularityRecommender().fit(data)
    bread, dress, drill = (item(data, n) for n in ("bread", "dress", "drill"))
    items, scores = model.recommend_context(
        [{"gender": "F"}, {"gender": "F"}], 3, exclude=[np.array([bread]), np.array([], int)]
    )
    assert items[0].tolist() == [dress, drill, -1]
    assert np.isneginf(scores[0, 2])
    assert items[1].tolist() == [bread, dress, drill]
    items, _ = model.recommend_context([{"gender": "M"}], 2, candidates=np.array([dress]))
    assert items[0].tolist() == [dress, -1]
    with pytest.raises(ValueError, match="one array per context"):
        model.recommend_context([{}], 2, exclude=[])
    with pytest.raises(ValueError, match="n must be at least 1"):
        model.recommend_context([{}], 0)


# -- segment popularity: explanations -------------------------------------------------


def test_top_segment_names_the_segment_that_lifts_the_item() -> None:
    data = shop()
    model = SegmentPopularityRecommender(shrinkage=1.0).fit(data)
    context = {"gender": "M", "device": "desktop"}
    # m0, m2 are on desktop and m1, m3 on mobile: device says nothing about drills.
    assert model.top_segment(context, item(data, "drill")) == ("gender", "M")
    assert model.top_segment(context, item(data, "bread")) is None  # not above global
    assert model.top_segment({"gender": "F"}, item(data, "drill")) is None
    assert model.explain_context(context, item(data, "drill")) == "popular with gender M"
    with pytest.raises(ValueError, match="outside the catalogue"):
        model.top_segment(context, data.n_items)


def test_explanations_read_naturally() -> None:
    rows = [("a", "phone-case", NOW), ("b", "phone-case", NOW), ("c", "sofa", NOW)]
    rows += [("d", "sofa", NOW), ("e", "sofa", NOW), ("f", "phone-case", NOW)]
    users = pd.DataFrame(
        {
            "user_id": list("abcdef"),
            "device": ["mobile", "mobile", "desktop", "desktop", "desktop", "mobile"],
            "country": ["DE", "DE", "FR", "FR", "FR", "DE"],
        }
    )
    data = Dataset.from_frames(
        pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), users=users
    )
    model = SegmentPopularityRecommender(shrinkage=1.0).fit(data)
    reason = model.explain_context({"device": "mobile", "country": "DE"}, item(data, "phone-case"))
    assert reason == "popular on mobile in DE"
    assert model.explain_context({"country": "FR"}, item(data, "sofa")) == "popular in FR"
    assert segment_phrase("age", "25-34", "age") == "with people aged 25-34"
    assert segment_phrase("zip", "9", "region") == "in zip area 9"
    assert segment_phrase("occupation", "student") == "with occupation student"


# -- segment popularity: persistence --------------------------------------------------


def test_save_load_keeps_contexts_and_explanations(tmp_path: Path) -> None:
    data = shop()
    model = SegmentPopularityRecommender(shrinkage=3.0).fit(data)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, SegmentPopularityRecommender)
    contexts = [{"gender": "M", "device": "mobile"}, {"gender": "F"}, {}]
    everything = np.arange(data.n_items)
    np.testing.assert_array_equal(
        loaded.score_context(contexts, everything), model.score_context(contexts, everything)
    )
    history = data.matrix()[:4]
    np.testing.assert_array_equal(
        loaded.score(history, everything), model.score(history, everything)
    )
    drill = item(data, "drill")
    assert loaded.top_segments(contexts[0], drill) == model.top_segments(contexts[0], drill)
    assert loaded.user_context([0, 9]) == model.user_context([0, 9])


# -- segment popularity on ml-100k: cold users ----------------------------------------


def test_context_beats_global_popularity_for_new_ml100k_users(shared_data_dir: Path) -> None:
    frames = load_movielens(shared_data_dir / "ml-100k")
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    rng = np.random.default_rng(0)
    cold = np.sort(rng.choice(data.n_users, size=data.n_users // 10, replace=False))
    held = np.isin(data.user_idx, cold)
    train = data.subset(~held)
    relevant = data.subset(held).matrix()[cold]
    candidates = np.flatnonzero(train.item_counts() > 0)
    features = data.user_features.set_index("user_id")
    contexts = [{k: str(v) for k, v in features.loc[data.users.ids[u]].items()} for u in cold]

    context_model = SegmentPopularityRecommender().fit(train)
    by_context, _ = context_model.recommend_context(contexts, 10, candidates=candidates)
    by_index, _ = context_model.recommend(
        empty_rows(len(cold), data.n_items), 10, candidates=candidates, users=cold
    )
    np.testing.assert_array_equal(by_context, by_index)
    popular, _ = (
        PopularityRecommender()
        .fit(train)
        .recommend(empty_rows(len(cold), data.n_items), 10, candidates=candidates)
    )
    context_ndcg = np.nanmean(metrics.ndcg_at_k(by_context, relevant, 10))
    global_ndcg = np.nanmean(metrics.ndcg_at_k(popular, relevant, 10))
    assert context_ndcg > 1.01 * global_ndcg, (context_ndcg, global_ndcg)


# -- trending -------------------------------------------------------------------------


def waves() -> pd.DataFrame:
    """'old' was big 100 days before the newest event, 'new' in the last days."""
    rows = [(f"a{u}", "old", NOW - 100 * DAY) for u in range(20)]
    rows += [(f"b{u}", "new", NOW - u * DAY) for u in range(4)]
    rows += [("c0", "mid", NOW - 7 * DAY), ("c1", "mid", NOW - 14 * DAY)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_trending_decays_counts_by_half_life() -> None:
    data = Dataset.from_frames(waves())
    model = TrendingRecommender(half_life_days=7.0).fit(data)
    decayed = dict(zip(data.items.ids, model.decayed_counts_, strict=True))
    assert decayed["mid"] == pytest.approx(0.5 + 0.25)
    assert decayed["new"] == pytest.approx(sum(0.5 ** (d / 7) for d in range(4)))
    assert decayed["old"] == pytest.approx(20 * 0.5 ** (100 / 7))
    np.testing.assert_allclose(model.item_scores_, np.log(model.decayed_counts_), rtol=1e-6)
    items, _ = model.recommend(empty_rows(1, data.n_items), 3)
    assert data.items.to_external(items[0]).tolist() == ["new", "mid", "old"]
    slow = TrendingRecommender(half_life_days=1000.0).fit(data)
    items, _ = slow.recommend(empty_rows(1, data.n_items), 3)
    assert data.items.to_external(items[0])[0] == "old"


def test_trending_ranks_long_idle_items_without_underflow() -> None:
    rows = [("u1", "ancient", NOW - 3650 * DAY), ("u2", "ancient", NOW - 3650 * DAY)]
    rows += [("u3", "older", NOW - 3700 * DAY), ("u4", "now", NOW)]
    data = Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    model = TrendingRecommender(half_life_days=1.0).fit(data)
    assert np.isfinite(model.item_scores_).all()
    items, _ = model.recommend(empty_rows(1, data.n_items), 3)
    assert data.items.to_external(items[0]).tolist() == ["now", "ancient", "older"]
    assert model.decayed_counts_[item(data, "older")] == 0.0  # underflows, as it should


def test_trending_scores_items_without_interactions_below_all_others() -> None:
    items_frame = pd.DataFrame({"item_id": ["old", "new", "mid", "unreleased"]})
    data = Dataset.from_frames(waves(), items=items_frame)
    model = TrendingRecommender().fit(data)
    unreleased = item(data, "unreleased")
    others = np.delete(model.item_scores_, unreleased)
    assert np.isfinite(model.item_scores_[unreleased])
    assert model.item_scores_[unreleased] == pytest.approx(others.min() - 1.0)


def test_trending_needs_timestamps(caplog: pytest.LogCaptureFixture) -> None:
    frame = waves().drop(columns="timestamp")
    with pytest.raises(NotApplicableError, match="timestamps"):
        TrendingRecommender().fit(Dataset.from_frames(frame))
    partial = waves().astype({"timestamp": "Int64"})
    partial.loc[partial["item_id"] == "old", "timestamp"] = pd.NA
    with caplog.at_level(logging.WARNING, logger="reco.models.context_popularity"):
        model = TrendingRecommender().fit(Dataset.from_frames(partial))
    assert "20 of 26 interactions have no timestamp" in caplog.text
    assert model.decayed_counts_[model.item_scores_.argmin()] == 0.0


@pytest.mark.parametrize("half_life", [0, -3.0, math.inf, "7", True])
def test_trending_rejects_bad_half_lives(half_life: object) -> None:
    with pytest.raises(ConfigurationError, match="half_life_days"):
        TrendingRecommender(half_life_days=half_life).fit(Dataset.from_frames(waves()))


def test_trending_round_trips(tmp_path: Path) -> None:
    data = Dataset.from_frames(waves())
    model = TrendingRecommender(half_life_days=3.0).fit(data)
    model.save(tmp_path / "t")
    loaded = TrendingRecommender.load(tmp_path / "t")
    np.testing.assert_array_equal(loaded.decayed_counts_, model.decayed_counts_)
    assert loaded.decayed_counts_.dtype == np.float64
    np.testing.assert_array_equal(loaded.item_scores_, model.item_scores_)


def test_two_with_phrases_are_joined_by_and() -> None:
    rows = [(u, "skateboard", NOW) for u in "ab"] + [(u, "tea", NOW) for u in "cdef"]
    users = pd.DataFrame(
        {
            "user_id": list("abcdef"),
            "age": [16, 17, 40, 50, 60, 70],
            "occupation": ["student", "student", "retired", "retired", "clerk", "clerk"],
        }
    )
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    data = Dataset.from_frames(frame, users=users)
    model = SegmentPopularityRecommender(shrinkage=1.0, age_bands=[18]).fit(data)
    reason = model.explain_context({"age": "15", "occupation": "student"}, 0)
    assert reason in (
        "popular with people aged under 18 and occupation student",
        "popular with occupation student and people aged under 18",
    )


def test_popularity_is_reach_so_repeats_do_not_count() -> None:
    rows = [("a", "gadget", NOW + t) for t in range(50)]  # one fan, 50 events
    rows += [(u, "book", NOW) for u in "bcd"]
    users = pd.DataFrame({"user_id": list("abcd"), "gender": ["F", "F", "M", "M"]})
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    data = Dataset.from_frames(frame, users=users)
    model = SegmentPopularityRecommender(shrinkage=0.0).fit(data)
    scores = model.score_context([{"gender": "F"}], [item(data, "gadget"), item(data, "book")])
    np.testing.assert_allclose(scores[0], [0.5, 0.5])
    assert model.popularity_[item(data, "book")] == pytest.approx(0.75)
