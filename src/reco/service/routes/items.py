"""Items: metadata and availability (an unavailable item is never recommended).

An item the served model was not trained with is a new item from its PUT on: it can
enter answers and has similar items before any retraining (:mod:`reco.service.new_items`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from reco.service.deps import ReadKey, State, WriteKey
from reco.service.errors import Problem
from reco.service.routes.params import READ, WRITE, PathId, problems
from reco.service.schemas import ItemIn, ItemOut

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.put("/{item_id}", response_model=ItemOut, responses=problems(*WRITE))
def put_item(
    _key: WriteKey, state: State, item_id: PathId, item: Annotated[ItemIn, Body()]
) -> ItemOut:
    """Create or replace an item; ``available: false`` takes it out of every answer
    at once (and a deleted item comes back). An item the served model was not trained
    with can be recommended at once, by its content and by trending."""
    from reco.store.entities import put_item as store_put_item

    stored = store_put_item(
        state.engine,
        item_id,
        title=item.title,
        text=item.text,
        categories=item.categories,
        available=item.available,
        attributes=item.attributes,
    )
    state.catalog.mark(item_id, unavailable=not stored["available"])
    if state.new_items is not None:
        state.new_items.put(stored, state.holder.current)
    return ItemOut.model_validate(stored)


@router.get("/{item_id}", response_model=ItemOut, responses=problems(*READ, 404, 503))
def get_item(_key: ReadKey, state: State, item_id: PathId) -> ItemOut:
    """A stored item; 404 when absent or deleted."""
    from reco.store.entities import get_item as store_get_item

    stored = store_get_item(state.engine, item_id)
    if stored is None:
        raise _no_item(item_id)
    return ItemOut.model_validate(stored)


@router.delete(
    "/{item_id}", status_code=204, response_class=Response, responses=problems(*WRITE, 404)
)
def delete_item(_key: WriteKey, state: State, item_id: PathId) -> Response:
    """Delete an item: it is never recommended again."""
    from reco.store.entities import delete_item as store_delete_item

    if not store_delete_item(state.engine, item_id):
        raise _no_item(item_id)
    state.catalog.mark(item_id, unavailable=True)
    if state.new_items is not None:
        state.new_items.forget(item_id, state.holder.current)
    return Response(status_code=204)


def _no_item(item_id: str) -> Problem:
    return Problem(
        404,
        f"there is no item {item_id[:100]!r} in the store (never stored, or deleted); "
        "create one with PUT /v1/items/{item_id}",
        kind="unknown-item",
    )
