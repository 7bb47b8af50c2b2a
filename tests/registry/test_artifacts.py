"""The registry publishes whole versions, verifies them, and swaps `current` atomically."""

from __future__ import annotations

import json

import pytest

from reco.errors import ArtifactError
from reco.registry import ModelRegistry


def publish(registry: ModelRegistry, payload: str = "weights") -> str:
    with registry.new_version({"selected_model": "m"}) as (version, folder):
        (folder / "model.bin").write_text(payload)
    return version


def test_published_version_has_manifest_with_checksums(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = publish(registry)
    manifest = json.loads((tmp_path / version / "manifest.json").read_text())
    assert manifest["version"] == version
    assert manifest["selected_model"] == "m"
    assert set(manifest["files"]) == {"model.bin"}
    assert registry.current_version() is None  # publishing does not promote


def test_failed_write_publishes_nothing(tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RuntimeError), registry.new_version({}) as (_, folder):
        (folder / "half.bin").write_text("x")
        raise RuntimeError("disk full")
    assert registry.versions() == []
    assert [p.name for p in tmp_path.iterdir()] == []


def test_promote_and_rollback(tmp_path):
    registry = ModelRegistry(tmp_path)
    first, second = publish(registry, "a"), publish(registry, "b")
    registry.promote(first)
    registry.promote(second)
    assert registry.current_version() == second
    assert (tmp_path / "current").is_symlink()
    assert registry.rollback() == first
    assert registry.get().version == first


def test_rollback_without_history_is_a_clear_error(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.promote(publish(registry))
    with pytest.raises(ArtifactError, match="no earlier"):
        registry.rollback()


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "model.bin").write_text("tampered"),
        lambda folder: (folder / "model.bin").unlink(),
        lambda folder: (folder / "extra.bin").write_text("?"),
        lambda folder: (folder / "manifest.json").write_text("{not json"),
    ],
    ids=["changed", "missing", "unexpected", "bad-manifest"],
)
def test_damaged_version_is_refused(tmp_path, damage):
    registry = ModelRegistry(tmp_path)
    version = publish(registry)
    damage(tmp_path / version)
    with pytest.raises(ArtifactError, match=version):
        registry.get(version)
    with pytest.raises(ArtifactError):
        registry.promote(version)


@pytest.mark.parametrize("name", ["../etc", ".staging-x", "nope"])
def test_unknown_or_hostile_version_names(tmp_path, name):
    registry = ModelRegistry(tmp_path)
    publish(registry)
    with pytest.raises(ArtifactError):
        registry.get(name)


def test_no_model_yet_says_what_to_run(tmp_path):
    with pytest.raises(ArtifactError, match="reco train"):
        ModelRegistry(tmp_path).get()
