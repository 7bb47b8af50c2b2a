"""Model versions: recorded, listed oldest first, exactly one current at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from reco.errors import ArtifactError
from reco.store import (
    current_model_version,
    list_model_versions,
    record_model_version,
    set_current_version,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record(engine, version: str, minutes: int, **overrides) -> None:
    values = {
        "version": version,
        "path": f"/models/{version}",
        "metrics": {"ndcg@10": np.float32(0.25), "users": np.int64(943)},
        "config_hash": "cfg",
        "data_fingerprint": "data",
        "created_at": T0 + timedelta(minutes=minutes),
    }
    record_model_version(engine, **(values | overrides))


def test_versions_are_listed_oldest_first_with_plain_metrics(store):
    _record(store, "v2", 2)
    _record(store, "v1", 1, metrics={"ndcg@10": float("nan"), "nested": {"k": [1, 2]}})
    listed = list_model_versions(store)
    assert [v["version"] for v in listed] == ["v1", "v2"]
    assert listed[0]["metrics"] == {"ndcg@10": None, "nested": {"k": [1, 2]}}
    assert listed[1]["metrics"] == {"ndcg@10": pytest.approx(0.25), "users": 943}
    assert listed[1]["created_at"] == T0 + timedelta(minutes=2)
    assert listed[1]["created_at"].tzinfo is not None
    assert listed[1]["path"] == "/models/v2"
    assert not any(v["is_current"] for v in listed)
    assert current_model_version(store) is None


def test_exactly_one_version_is_current(store):
    _record(store, "v1", 1)
    _record(store, "v2", 2)
    set_current_version(store, "v1")
    set_current_version(store, "v2")
    set_current_version(store, "v2")  # idempotent
    assert current_model_version(store) == "v2"
    assert [v["is_current"] for v in list_model_versions(store)] == [False, True]


def test_the_database_itself_refuses_two_current_versions(store):
    _record(store, "v1", 1)
    _record(store, "v2", 2)
    set_current_version(store, "v1")
    with pytest.raises(IntegrityError), store.begin() as connection:
        connection.execute(text("UPDATE model_versions SET is_current = true WHERE version = 'v2'"))


def test_unknown_version_cannot_become_current(store):
    _record(store, "v1", 1)
    set_current_version(store, "v1")
    with pytest.raises(ArtifactError, match=r"'nope' is not recorded.*Known versions: v1"):
        set_current_version(store, "nope")
    assert current_model_version(store) == "v1"


def test_recording_again_updates_and_keeps_current_flag_and_creation_time(store):
    _record(store, "v1", 1)
    set_current_version(store, "v1")
    _record(store, "v1", 99, path="/elsewhere", metrics={"ndcg@10": 0.3})
    (only,) = list_model_versions(store)
    assert only["path"] == "/elsewhere"
    assert only["metrics"] == {"ndcg@10": 0.3}
    assert only["is_current"]
    assert only["created_at"] == T0 + timedelta(minutes=1)


def test_version_names_must_fit(store):
    with pytest.raises(ArtifactError, match="1 to 255"):
        _record(store, "", 1)
