"""Versioned model artifacts: one folder per version, a manifest, an atomic `current` pointer."""

from reco.registry.artifacts import ModelRegistry, ModelVersion

__all__ = ["ModelRegistry", "ModelVersion"]
