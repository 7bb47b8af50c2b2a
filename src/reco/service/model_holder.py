"""The model a worker serves, and how it changes without dropping a request.

:class:`ModelHolder` keeps one reference to a :class:`LoadedModel` (version, bundle,
store watermark). A request takes that reference once and uses it to the end, so a
swap never changes a model under a request. A background thread reads the registry's
``current`` pointer every ``reload_check_seconds`` (one ``readlink``: cheap) and, when
it names another version, loads that version off the request path, warms it up and
swaps the reference. A version that fails to load is logged and skipped: the worker
keeps serving the version it had.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from reco.config import Settings
from reco.errors import ArtifactError, RecoError
from reco.registry import ModelRegistry
from reco.training.bundle import ModelBundle
from reco.training.job import load_current

log = logging.getLogger(__name__)

NO_MODEL = "no model: run `reco train` to train one (the service picks it up by itself)"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One loaded version: the bundle and the store watermark it was trained up to.

    Interactions with a store id above ``watermark`` happened after the training
    snapshot; the service adds them to the model's histories.
    """

    version: str
    bundle: ModelBundle
    watermark: int
    manifest: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)

    @property
    def pipeline(self):
        """The pipeline that answers."""
        return self.bundle.pipeline


class ModelHolder:
    """Holds the served model and swaps it atomically when the registry changes."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = ModelRegistry(settings.models_dir)
        self._on_swap = on_swap
        self._model: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._failed: str | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model to answer with (None before any version was trained)."""
        return self._model

    def load(self, version: str | None = None) -> LoadedModel:
        """Load ``version`` (default: the registry's current one) without serving it."""
        name, bundle = load_current(self.settings, version)
        manifest = self.registry.get(name).manifest
        watermark = manifest.get("store_watermark")
        if watermark is None:
            from reco.store.events import watermark as store_watermark

            # Trained before the watermark was recorded: only count events from now on.
            watermark = store_watermark(self.engine)
            log.warning(
                "model version %s records no store_watermark; events after %d are added "
                "to histories (retrain to fix)",
                name,
                watermark,
            )
        loaded = LoadedModel(name, bundle, int(watermark), manifest)
        if self.settings.service.compile_ranker:
            _compile_ranker(loaded)
        _warm_up(loaded)
        return loaded

    def swap(self, loaded: LoadedModel) -> None:
        """Serve ``loaded`` from now on (requests in flight keep the one they took)."""
        previous = self._model
        self._model = loaded
        self._failed = None
        self.last_error = None
        if self._on_swap is not None:
            self._on_swap(previous, loaded)
        del previous
        _settle_heap()
        log.info(
            "serving model version %s",
            loaded.version,
            extra={"fields": {"model_version": loaded.version}},
        )

    def load_initial(self) -> None:
        """Load the current version at start-up; without one the service still starts."""
        try:
            self.check()
        except Exception:  # a bad artifact must not keep /health/live down
            log.exception("could not load the current model at start-up")

    def check(self) -> bool:
        """Load and serve the registry's current version if it changed; True if swapped.

        Failures are logged and remembered: the same version is not retried until the
        pointer moves again (or :meth:`reload` is called).
        """
        target = self.registry.current_version()
        model = self._model
        if target is None:
            if model is None:
                self.last_error = NO_MODEL
            return False
        if (model is not None and target == model.version) or target == self._failed:
            return False
        with self._load_lock:
            model = self._model
            if model is not None and target == model.version:
                return False
            try:
                loaded = self.load(target)
            except (RecoError, OSError, ValueError) as exc:
                self._failed = target
                self.last_error = f"model version {target} cannot be loaded: {exc}"
                log.error(
                    "keeping version %s: %s",
                    model.version if model else None,
                    self.last_error,
                    extra={"fields": {"model_version": target}},
                )
                return False
            self.swap(loaded)
            return True

    def reload(self) -> LoadedModel:
        """Load the registry's current version now and serve it (after promote or
        rollback); raises ArtifactError when it cannot be loaded."""
        with self._load_lock:
            target = self.registry.current_version()
            if target is None:
                raise ArtifactError(NO_MODEL)
            model = self._model
            if model is not None and model.version == target:
                return model
            loaded = self.load(target)
            self.swap(loaded)
            return loaded

    def promote(self, version: str) -> tuple[str | None, LoadedModel]:
        """Load ``version``, make it the registry's current one, serve it.

        Loading comes first: a version that cannot be loaded is never promoted.
        Returns (previous current version, the loaded model).
        """
        with self._load_lock:
            previous = self.registry.current_version()
            loaded = self._same_or_load(version)
            self.registry.promote(version)
            if loaded is not self._model:
                self.swap(loaded)
            return previous, loaded

    def rollback(self) -> tuple[str | None, LoadedModel]:
        """Make the previously promoted version current and serve it."""
        with self._load_lock:
            previous = self.registry.current_version()
            target = self.registry.rollback()
            loaded = self._same_or_load(target)
            if loaded is not self._model:
                self.swap(loaded)
            return previous, loaded

    def _same_or_load(self, version: str) -> LoadedModel:
        model = self._model
        if model is not None and model.version == version:
            return model
        return self.load(version)


def _settle_heap() -> None:
    """Collect what a swap released, then exempt every object alive now (the served
    model above all) from Python's cyclic garbage collector.

    A loaded pipeline holds hundreds of thousands of objects, and every full collection
    walked them all with the GIL held: 100-250 ms during which no request moved, the
    slowest answers of a loaded worker. Frozen objects are still freed by reference
    counting; unfreezing first lets the next swap reclaim the old model's cycles too.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _compile_ranker(model: LoadedModel) -> None:
    """Compile the ranker's trees for serving; LightGBM's predictor stays if that fails."""
    ranker = model.pipeline.ranker
    if ranker is None:
        return
    started = time.perf_counter()
    try:
        ranker.compile()
    except RecoError as exc:
        log.warning("model version %s: %s; ranking with LightGBM's predictor", model.version, exc)
        return
    log.info(
        "model version %s: ranker compiled in %.1f s",
        model.version,
        time.perf_counter() - started,
    )


def _warm_up(model: LoadedModel) -> None:
    """Answer one cold and one known user so lazily built parts exist before traffic."""
    pipeline = model.pipeline
    users = ["\x00warm-up-cold-user"]
    if len(pipeline.users):
        users.append(str(pipeline.users.ids[0]))
    try:
        pipeline.recommend_users(users, 10)
    except Exception:
        log.exception("warming up model version %s failed", model.version)
