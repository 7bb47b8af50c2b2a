"""Model versions: list them, promote one, roll back (admin); this worker swaps at once,
the others within ``reload_check_seconds``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from reco.errors import ArtifactError
from reco.service.deps import AdminKey, ReadKey, State
from reco.service.errors import Problem
from reco.service.model_holder import LoadedModel
from reco.service.routes.params import READ, problems
from reco.service.schemas import ModelChange, ModelsResponse, ModelVersionOut
from reco.service.state import ServiceState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsResponse, responses=problems(*READ))
def list_models(_key: ReadKey, state: State) -> ModelsResponse:
    """Every trained version with its validation metrics; which one is current (the
    registry) and which one this worker serves."""
    registry = state.holder.registry
    current = registry.current_version()
    model = state.holder.current
    serving = model.version if model is not None else None
    versions = [
        ModelVersionOut(
            version=entry.version,
            created_at=entry.manifest.get("created_at"),
            current=entry.version == current,
            serving=entry.version == serving,
            selected_model=entry.manifest.get("selected_model"),
            metrics=entry.manifest.get("metrics", {}),
            data=entry.manifest.get("data", {}),
        )
        for entry in registry.versions()
    ]
    return ModelsResponse(current=current, serving=serving, versions=versions)


@router.post(
    "/{version}/promote",
    response_model=ModelChange,
    responses=problems(*READ, 404, 409),
)
def promote(_key: AdminKey, state: State, version: str, response: Response) -> ModelChange:
    """Make ``version`` current and serve it (it is loaded first: a version that
    cannot be loaded is never promoted)."""
    known = {entry.version for entry in state.holder.registry.versions()}
    if version not in known:
        raise Problem(
            404,
            f"there is no model version {version[:100]!r}; GET /v1/models lists them",
            kind="unknown-version",
        )
    try:
        previous, loaded = state.holder.promote(version)
    except ArtifactError as exc:
        raise Problem(
            409, f"version {version} cannot be served: {exc}", kind="bad-version"
        ) from None
    _record_in_store(state, loaded)
    response.headers["X-Model-Version"] = loaded.version
    return ModelChange(current=loaded.version, previous=previous, serving=loaded.version)


@router.post("/rollback", response_model=ModelChange, responses=problems(*READ, 409))
def rollback(_key: AdminKey, state: State, response: Response) -> ModelChange:
    """Make the previously promoted version current again and serve it."""
    try:
        previous, loaded = state.holder.rollback()
    except ArtifactError as exc:
        raise Problem(409, f"cannot roll back: {exc}", kind="no-rollback") from None
    _record_in_store(state, loaded)
    response.headers["X-Model-Version"] = loaded.version
    return ModelChange(current=loaded.version, previous=previous, serving=loaded.version)


def _record_in_store(state: ServiceState, model: LoadedModel) -> None:
    """Mirror the registry's choice in the store's model_versions table (best effort:
    the registry is what workers follow)."""
    from reco.store.repository import record_model_version, set_current_version

    manifest = model.manifest
    try:
        record_model_version(
            state.engine,
            version=model.version,
            path=str((state.holder.registry.root / model.version).resolve()),
            metrics=manifest.get("metrics", {}),
            config_hash=manifest.get("config_hash", ""),
            data_fingerprint=manifest.get("data_fingerprint", ""),
        )
        set_current_version(state.engine, model.version)
    except Exception:
        log.exception("could not record version %s as current in the store", model.version)
