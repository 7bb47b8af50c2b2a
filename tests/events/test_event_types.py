"""Event types and their weights (EventsConfig)."""

from __future__ import annotations

import pytest

from reco.config import EventsConfig, Settings
from reco.errors import ValidationError


def test_default_weights():
    config = EventsConfig()
    assert config.event_weight("view") == 1.0
    assert config.event_weight("click") == 2.0
    assert config.event_weight("like") == 4.0
    assert config.event_weight("purchase") == 8.0
    assert config.event_weight("rating", 4.5) == 4.5
    assert config.event_weight("rating", None) == 1.0
    assert config.event_weight("dislike") < 0
    assert config.is_dislike("dislike") and not config.is_dislike("rating")
    # What files without an event type are stored as.
    assert config.event_weight("interaction") == 1.0


def test_unknown_type_is_rejected_with_the_known_ones_listed():
    config = EventsConfig()
    with pytest.raises(ValidationError) as caught:
        config.check_event_types(["view", "teleport", None, "Like"])
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("event 1: event_type: 'teleport' is not a known event type")
    assert "click, dislike, interaction, like, purchase, rating, view" in problems[0]
    assert problems[1].startswith("event 3: event_type: 'Like'")
    with pytest.raises(KeyError, match="known: click, dislike"):
        config.event_weight("teleport")


def test_types_are_configurable_from_the_environment(monkeypatch):
    monkeypatch.setenv("RECO_EVENTS__TYPES", '{"play": 3, "skip": -0.5}')
    monkeypatch.setenv("RECO_EVENTS__HISTORY_LENGTH", "50")
    config = Settings().events
    assert config.event_weight("play") == 3.0
    assert config.is_dislike("skip")
    assert config.history_length == 50
    config.check_event_types(["play", "skip"])
    with pytest.raises(ValidationError):
        config.check_event_types(["view"])


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="give a number"):
        EventsConfig(types={"view": float("nan")})
    with pytest.raises(ValueError, match="at least one event type"):
        EventsConfig(types={})


def test_bus_follows_the_redis_url_unless_set():
    assert EventsConfig().resolved_bus(None) == "memory"
    assert EventsConfig().resolved_bus("redis://localhost") == "redis"
    assert EventsConfig(bus="memory").resolved_bus("redis://localhost") == "memory"
