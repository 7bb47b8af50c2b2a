"""Fixtures of the training tests: small synthetic shops and quick pipeline settings."""

from __future__ import annotations

from reco.config import PipelineConfig, RankerConfig

FAST_PARAMS = {
    "itemknn": {"k": 50},
    "als": {"factors": 16, "iterations": 5},
    "ease": {"l2": 50.0},
}


def fast_config(**changes) -> PipelineConfig:
    """The default pipeline with a quick ranker, changed as asked."""
    ranker = {"max_rounds": 200, "early_stopping_rounds": 20} | changes.pop("ranker", {})
    return PipelineConfig(ranker=RankerConfig(**ranker), **changes)
