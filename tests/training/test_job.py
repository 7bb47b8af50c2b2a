"""The training job: a published version records the selection and every measurement."""

from __future__ import annotations

import json

import pytest

from reco.config import Settings
from reco.data.synthetic import generate
from reco.errors import ArtifactError, ConfigurationError
from reco.registry import ModelRegistry
from reco.training.bundle import ModelBundle
from reco.training.job import load_current, train

from .conftest import FAST_PARAMS, fast_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, pipeline=fast_config(), model_params=FAST_PARAMS)
    frames = generate(n_users=250, n_items=150, n_interactions=9_000, seed=11)
    return settings, train(frames, settings)


def test_version_is_published_with_the_selection(trained):
    settings, result = trained
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert ModelRegistry(settings.models_dir).current_version() == result.version
    assert manifest["selected_model"] == result.selected == manifest["selection"]["chosen"]
    validation = manifest["metrics"]["validation"]
    assert "pipeline" in validation and {"ease", "itemknn", "als"} <= set(validation)
    best = max(v["ndcg@10"] for v in validation.values())
    assert validation[result.selected]["ndcg@10"] == best
    assert manifest["pipeline"]["sources"] and manifest["pipeline"]["mode"]
    assert manifest["config"]["pipeline"]["sources"] == settings.pipeline.sources
    assert "lightgbm" in manifest["library_versions"]
    assert any(name.endswith("ranker.txt") for name in manifest["files"])


def test_the_current_version_loads_and_answers(trained):
    settings, result = trained
    version, bundle = load_current(settings)
    assert version == result.version
    assert bundle.default == result.selected
    recs = bundle.pipeline.recommend_users(["u1", "someone-new"], 5)
    assert [len(r) for r in recs] == [5, 5]
    assert bundle.model("itemknn").name == "itemknn"
    with pytest.raises(ConfigurationError, match="not in this version"):
        bundle.model("nope")


def test_a_tampered_manifest_choice_is_refused(trained):
    _, result = trained
    with pytest.raises(ArtifactError, match="inconsistent"):
        ModelBundle.load(result.path, default="popularity-that-was-not-chosen")


def test_model_params_for_unknown_models_fail_before_training(tmp_path):
    settings = Settings(home=tmp_path, pipeline=fast_config(), model_params={"nope": {}})
    frames = generate(n_users=50, n_items=30, n_interactions=500, seed=1)
    with pytest.raises(ConfigurationError, match="nope"):
        train(frames, settings)
