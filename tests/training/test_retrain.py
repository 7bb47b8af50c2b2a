"""Retraining on a SQLite store holding a small ml-100k slice: promote the first time,
keep a worse version unpromoted (reason recorded everywhere), promote one within
tolerance, and the worker's schedule (durations, the after-events trigger)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from reco.config import PipelineConfig, RankerConfig, Settings
from reco.data.schema import Frames
from reco.errors import RecoError
from reco.registry import ModelRegistry
from reco.store.db import open_store
from reco.store.repository import ingest, list_model_versions
from reco.training.retrain import retrain

SLICE_USERS = 120
FAST_PARAMS = {"itemknn": {"k": 50}, "ease": {"l2": 50.0}}
# Small and quick: two history sources and popularity, a short ranker.
GOOD = PipelineConfig(
    sources={"ease": 100, "itemknn": 100, "popularity": 30},
    ranker=RankerConfig(max_rounds=60, early_stopping_rounds=10),
    cold_history_threshold=1,
    cold_trending_weight=0.0,
)
# Honestly worse: popularity alone (no personalisation at all).
POPULARITY_ONLY = PipelineConfig(
    sources={"popularity": 100},
    ranker=RankerConfig(enabled=False),
    cold_history_threshold=1,
    cold_trending_weight=0.0,
)


@pytest.fixture(scope="module")
def slice_frames(shared_data_dir: Path) -> Frames:
    """The first users of ml-100k, with every item and user described."""
    from reco.data.movielens import load_path

    frames = load_path(shared_data_dir / "ml-100k")
    ratings = frames.interactions
    keep = ratings["user_id"].astype(int) <= SLICE_USERS
    return Frames(ratings[keep].reset_index(drop=True), frames.items, frames.users)


def settings_for(home: Path, pipeline: PipelineConfig = GOOD, **changes) -> Settings:
    """Settings of a private home with a quick pipeline."""
    return Settings(home=home, pipeline=pipeline, model_params=FAST_PARAMS, **changes)


@pytest.fixture
def store(tmp_path: Path, slice_frames: Frames):
    """A SQLite store holding the slice; yields (settings, engine)."""
    settings = settings_for(tmp_path)
    engine = open_store(settings.resolved_database_url)
    ingest(engine, slice_frames, source="ml-100k slice")
    yield settings, engine
    engine.dispose()


def test_first_retrain_promotes_and_records(store) -> None:
    settings, engine = store
    result = retrain(engine, settings)
    registry = ModelRegistry(settings.models_dir)
    assert result.promoted and result.previous is None
    assert registry.current_version() == result.version
    manifest = registry.get(result.version).manifest
    assert manifest["retrain"]["promoted"] is True
    assert "first model" in manifest["retrain"]["reason"]
    rows = {row["version"]: row for row in list_model_versions(engine)}
    assert rows[result.version]["is_current"]
    assert rows[result.version]["metrics"]["retrain"]["promoted"] is True
    assert registry.history()[-1]["action"] == "promote"


def test_worse_retrain_is_kept_unpromoted_with_reason(store) -> None:
    settings, engine = store
    first = retrain(engine, settings)
    worse = retrain(engine, settings_for(settings.home, POPULARITY_ONLY))
    registry = ModelRegistry(settings.models_dir)
    assert not worse.promoted
    assert registry.current_version() == first.version
    comparison = worse.comparison
    assert comparison is not None and comparison.users > 0
    assert comparison.candidate < comparison.floor
    assert "worse than the serving version" in worse.reason
    # The version is published (loadable) but not current; why is recorded everywhere.
    manifest = registry.get(worse.version).manifest
    assert manifest["retrain"]["promoted"] is False
    assert manifest["retrain"]["reason"] == worse.reason
    last = registry.history()[-1]
    assert last == {**last, "version": worse.version, "action": "not_promoted"}
    rows = {row["version"]: row for row in list_model_versions(engine)}
    assert not rows[worse.version]["is_current"] and rows[first.version]["is_current"]
    assert rows[worse.version]["metrics"]["retrain"]["reason"] == worse.reason
    # A kept version never becomes a rollback target.
    third = retrain(engine, settings)
    assert third.promoted
    assert registry.rollback() == first.version


def test_retrain_within_tolerance_is_promoted(store) -> None:
    settings, engine = store
    first = retrain(engine, settings)
    again = retrain(engine, settings)
    comparison = again.comparison
    assert comparison is not None
    print(comparison)
    assert again.promoted, again.reason
    assert comparison.candidate >= comparison.floor
    assert ModelRegistry(settings.models_dir).current_version() == again.version
    assert again.previous == first.version


def test_a_second_retrain_at_once_is_refused(store) -> None:
    from reco.training.retrain import _exclusive

    settings, engine = store
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with _exclusive(ModelRegistry(settings.models_dir)):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(RecoError, match="another retrain is running"):
            retrain(engine, settings)
    finally:
        release.set()
        thread.join()
    assert json.dumps(list_model_versions(engine), default=str) == "[]"


def test_parse_duration() -> None:
    from reco.errors import ConfigurationError
    from reco.training.schedule import parse_duration

    assert parse_duration("30m") == 1800
    assert parse_duration("1h") == 3600
    assert parse_duration("1.5d") == 129600
    for bad in ("", "10", "1w", "-1h", "0s"):
        with pytest.raises(ConfigurationError):
            parse_duration(bad)


def test_after_events_trigger_fires_after_n_new_events(store) -> None:
    from types import SimpleNamespace

    from reco.store.events import append_events, watermark
    from reco.training.schedule import RetrainScheduler

    settings, engine = store
    runs = []

    def fake_retrain():
        runs.append(watermark(engine))
        return SimpleNamespace(store_watermark=runs[-1])

    scheduler = RetrainScheduler(settings, engine, after_events=5, run=fake_retrain)
    assert scheduler.check_once()  # no model yet: the whole store is new
    assert not scheduler.check_once()
    events = [{"user_id": "1", "item_id": str(i), "event_type": "interaction"} for i in range(5)]
    append_events(engine, events[:4])
    assert scheduler.new_events() == 4 and not scheduler.check_once()
    append_events(engine, events[4:])
    assert scheduler.check_once() and len(runs) == 2
    assert scheduler.new_events() == 0


def test_a_failed_scheduled_retrain_is_logged_and_retried_later(store) -> None:
    from reco.training.schedule import RetrainScheduler

    settings, engine = store

    def broken():
        raise RecoError("disk full")

    scheduler = RetrainScheduler(settings, engine, after_events=1, run=broken, retry_seconds=3600)
    assert scheduler.check_once()
    assert scheduler.failures == 1 and scheduler.last_error == "disk full"
    assert not scheduler.check_once()  # waits before trying again
