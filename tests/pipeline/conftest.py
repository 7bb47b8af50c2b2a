"""Fixtures of the pipeline tests: a synthetic shop and a pipeline fitted on it once."""

from __future__ import annotations

import numpy as np
import pytest

from reco.config import PipelineConfig, RankerConfig
from reco.data.dataset import Dataset
from reco.data.synthetic import generate
from reco.pipeline.history import Histories
from reco.training.fit import PipelineFit, fit_pipeline

# Small models: every source fits in well under a second on the test data.
FAST_PARAMS = {
    "itemknn": {"k": 50},
    "als": {"factors": 16, "iterations": 5},
    "ease": {"l2": 50.0},
}
FAST_RANKER = RankerConfig(max_rounds=200, early_stopping_rounds=20)


def fast_config(**changes) -> PipelineConfig:
    """The default pipeline with a quick ranker, changed as asked."""
    return PipelineConfig(ranker=FAST_RANKER, **changes)


def shop_data(seed: int = 1, **shape) -> Dataset:
    """A synthetic shop: users with device/os/country/age band, items with text."""
    size = {"n_users": 400, "n_items": 300, "n_interactions": 20_000} | shape
    frames = generate(**size, seed=seed)
    return Dataset.from_frames(frames.interactions, frames.items, frames.users)


@pytest.fixture(scope="session")
def shop() -> Dataset:
    """The synthetic shop every pipeline test shares."""
    return shop_data()


@pytest.fixture(scope="session")
def fitted(shop: Dataset) -> PipelineFit:
    """The default pipeline fitted on the shop (once per test session)."""
    return fit_pipeline(shop, fast_config(), model_params=FAST_PARAMS, seed=42)


@pytest.fixture(scope="session")
def everyone(shop: Dataset) -> Histories:
    """History rows of every shop user."""
    return Histories.from_dataset(shop, np.arange(shop.n_users))
