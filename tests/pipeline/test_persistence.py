"""Saving and loading the whole pipeline: bit-exact, no pickle, damage refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from reco.errors import ArtifactError
from reco.pipeline.pipeline import Pipeline


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    fitted.pipeline.save(folder)
    return folder


def test_round_trip_gives_identical_recommendations(fitted, everyone, saved):
    loaded = Pipeline.load(saved)
    before = fitted.pipeline.recommend(everyone, 20)
    after = loaded.recommend(everyone, 20)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert (before.sources == after.sources).all()
    assert (before.reasons == after.reasons).all()
    cold_before = fitted.pipeline.recommend_users(["x"], 5, contexts=[{"device": "mobile"}])
    cold_after = loaded.recommend_users(["x"], 5, contexts=[{"device": "mobile"}])
    assert cold_before == cold_after


def test_everything_loads_without_pickle(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle must not be used to load a pipeline")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    Pipeline.load(saved)
    with np.load(saved / "state.npz", allow_pickle=False) as npz:
        assert "history_indptr" in npz.files
    text = (saved / "ranker.txt").read_text()
    assert text.startswith("tree")
    meta = json.loads((saved / "pipeline.json").read_text())
    assert meta["mode"] == "ranker" and meta["has_ranker"]


def test_a_damaged_ranker_is_refused(fitted, tmp_path):
    fitted.pipeline.save(tmp_path)
    (tmp_path / "ranker.txt").write_text("tree\nnot a model\n")
    with pytest.raises(ArtifactError):
        Pipeline.load(tmp_path)


def test_a_truncated_state_is_refused(fitted, tmp_path):
    fitted.pipeline.save(tmp_path)
    state = tmp_path / "state.npz"
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="corrupted"):
        Pipeline.load(tmp_path)


def test_a_missing_source_is_refused(fitted, tmp_path):
    fitted.pipeline.save(tmp_path)
    for path in (tmp_path / "sources" / "itemknn").iterdir():
        path.unlink()
    with pytest.raises(ArtifactError):
        Pipeline.load(tmp_path)


def test_an_unknown_format_is_refused(fitted, tmp_path):
    fitted.pipeline.save(tmp_path)
    meta = json.loads((tmp_path / "pipeline.json").read_text())
    meta["format"] = 99
    (tmp_path / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format 99"):
        Pipeline.load(tmp_path)


def test_a_pipeline_saved_before_scored_history_keeps_scoring_every_item(fitted, tmp_path):
    fitted.pipeline.save(tmp_path)
    assert Pipeline.load(tmp_path).config.scored_history == fitted.pipeline.config.scored_history
    meta = json.loads((tmp_path / "pipeline.json").read_text())
    del meta["config"]["scored_history"]  # what an older reco wrote
    (tmp_path / "pipeline.json").write_text(json.dumps(meta))
    assert Pipeline.load(tmp_path).config.scored_history is None
