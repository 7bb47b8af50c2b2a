"""Fitting the pipeline: auto-selection, switched-off sources, no timestamps, determinism."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.data.synthetic import generate
from reco.errors import RecoError
from reco.pipeline.history import Histories
from reco.pipeline.ranker import Ranker
from reco.training.fit import PIPELINE_NAME, SELECTION_METRIC, fit_pipeline

from .conftest import FAST_PARAMS, fast_config


def shop(**shape):
    size = {"n_users": 300, "n_items": 200, "n_interactions": 12_000} | shape
    return generate(**size, seed=5)


@pytest.fixture(scope="module")
def frames():
    return shop()


@pytest.fixture(scope="module")
def full(frames):
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    return data, fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=7)


def test_selection_measures_everything_and_serves_the_best(full):
    _data, fit = full
    measured = fit.selection.validation
    assert set(measured) == set(fit.pipeline.sources) | {PIPELINE_NAME}
    best = max(measured.values(), key=lambda m: m[SELECTION_METRIC])[SELECTION_METRIC]
    chosen = measured[fit.selection.chosen][SELECTION_METRIC]
    # Never worse on validation than the best single source.
    assert chosen == best
    users = fit.selection.users
    assert users["selection"] > 0 and users["ranker_train"] > users["ranker_stop"] > 0
    assert fit.selection.ranker["rounds"] >= 1


def test_a_weak_ranker_is_not_served(frames, monkeypatch):
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    # A ranker that cannot tell candidates apart: validation must catch it.
    monkeypatch.setattr(Ranker, "predict", lambda self, features: np.zeros(len(features)))
    fit = fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=7)
    measured = fit.selection.validation
    assert fit.selection.chosen != PIPELINE_NAME
    assert fit.pipeline.mode == fit.selection.chosen
    assert (
        measured[fit.selection.chosen][SELECTION_METRIC] > measured[PIPELINE_NAME][SELECTION_METRIC]
    )


def test_ranker_disabled_serves_the_best_source(frames):
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    config = fast_config(ranker={"enabled": False})
    fit = fit_pipeline(data, config, model_params=FAST_PARAMS, seed=7)
    assert fit.pipeline.ranker is None and PIPELINE_NAME not in fit.selection.validation
    assert fit.pipeline.mode == fit.selection.chosen


def test_no_item_text_and_no_user_attributes_switch_sources_off(frames, caplog):
    data = Dataset.from_frames(frames.interactions)
    with caplog.at_level(logging.WARNING, logger="reco.pipeline.sources"):
        fit = fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=7)
    assert {"content", "segment_popularity"} <= set(fit.skipped)
    assert "content" not in fit.pipeline.sources
    logged = caplog.text
    assert "source content switched off" in logged
    assert "source segment_popularity switched off" in logged
    out = fit.pipeline.recommend_users([str(data.users.ids[0]), "new"], 10)
    assert [len(recs) for recs in out] == [10, 10]


def test_no_timestamps_works_and_trending_is_off(frames):
    interactions = frames.interactions.drop(columns="timestamp")
    data = Dataset.from_frames(interactions, frames.items, frames.users)
    fit = fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=7)
    assert "trending" in fit.skipped
    assert np.isnan(fit.pipeline.data_end)
    histories = Histories.from_dataset(data, np.arange(50))
    result = fit.pipeline.recommend(histories, 10)
    assert (result.items >= 0).all()
    out = fit.pipeline.recommend_users(["new"], 5, contexts=[{"device": "mobile"}])
    assert len(out[0]) == 5


def test_same_seed_same_pipeline(frames):
    small = shop(n_users=150, n_items=120, n_interactions=5_000)
    data = Dataset.from_frames(small.interactions, small.items, small.users)
    first = fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=3)
    second = fit_pipeline(data, fast_config(), model_params=FAST_PARAMS, seed=3)
    histories = Histories.from_dataset(data, np.arange(data.n_users))
    a = first.pipeline.recommend(histories, 10)
    b = second.pipeline.recommend(histories, 10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert first.selection.validation == second.selection.validation


def test_too_little_data_is_a_clear_error():
    tiny = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "x", "z"]})
    data = Dataset.from_frames(tiny)
    with pytest.raises(RecoError, match="5 interactions needed"):
        fit_pipeline(data, fast_config(), model_params=FAST_PARAMS)
