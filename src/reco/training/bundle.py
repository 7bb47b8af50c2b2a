"""A trained bundle: the fitted pipeline of one model version and its sources.

Written by the training job into a registry version folder, read by everything that
answers (batch recommend, the service). Plain formats only (see
:meth:`reco.pipeline.pipeline.Pipeline.save`): JSON, npz without pickle, each
source's own save format, the ranker as LightGBM text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reco.data.vocabulary import Vocabulary
from reco.errors import ArtifactError, ConfigurationError
from reco.models.base import BaseRecommender
from reco.pipeline.pipeline import RANKER_MODE, Pipeline

PIPELINE_DIR = "pipeline"


@dataclass(frozen=True)
class ModelBundle:
    """One model version: the pipeline that answers, and its sources by name."""

    pipeline: Pipeline

    @property
    def users(self) -> Vocabulary:
        """Training users."""
        return self.pipeline.users

    @property
    def items(self) -> Vocabulary:
        """The catalogue."""
        return self.pipeline.items

    @property
    def models(self) -> dict[str, BaseRecommender]:
        """The pipeline's fitted sources by name."""
        return self.pipeline.sources

    @property
    def default(self) -> str:
        """What answers by default: "pipeline" (ranker) or the source served alone."""
        return "pipeline" if self.pipeline.mode == RANKER_MODE else self.pipeline.mode

    def model(self, name: str | None = None) -> BaseRecommender:
        """The named source (default: the one served alone, when one is)."""
        name = name or self.pipeline.mode
        if name not in self.models:
            raise ConfigurationError(
                f"model {name!r} is not in this version; it has: {', '.join(sorted(self.models))}"
            )
        return self.models[name]

    def save(self, folder: Path) -> None:
        """Write the pipeline under ``folder``."""
        self.pipeline.save(Path(folder) / PIPELINE_DIR)

    @classmethod
    def load(cls, folder: Path, default: str | None = None) -> ModelBundle:
        """Read a bundle written by :meth:`save`.

        ``default`` (the manifest's selected model), when given, must match what the
        pipeline serves: a mismatch means the version folder was tampered with.
        """
        folder = Path(folder)
        if not (folder / PIPELINE_DIR).is_dir():
            raise ArtifactError(
                f"{folder} holds no pipeline (was it trained by an older reco?); retrain "
                "with `reco train`"
            )
        bundle = cls(Pipeline.load(folder / PIPELINE_DIR))
        if default is not None and default != bundle.default:
            raise ArtifactError(
                f"{folder}: the manifest selected {default!r} but the pipeline serves "
                f"{bundle.default!r}; the version is inconsistent, retrain with `reco train`"
            )
        return bundle
