"""Users: attributes (used for cold starts), and deletion (forgets their events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from reco.service.deps import ReadKey, State, WriteKey
from reco.service.errors import Problem
from reco.service.recommending import forget_answers
from reco.service.routes.params import READ, WRITE, PathId, problems
from reco.service.schemas import UserIn, UserOut

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.put("/{user_id}", response_model=UserOut, responses=problems(*WRITE))
def put_user(
    _key: WriteKey, state: State, user_id: PathId, user: Annotated[UserIn, Body()]
) -> UserOut:
    """Create or replace a user's attributes (a deleted user comes back)."""
    from reco.store.entities import put_user as store_put_user

    stored = store_put_user(state.engine, user_id, user.attributes)
    forget_answers(state, [user_id])
    return UserOut.model_validate(stored)


@router.get("/{user_id}", response_model=UserOut, responses=problems(*READ, 404, 503))
def get_user(_key: ReadKey, state: State, user_id: PathId) -> UserOut:
    """A stored user; 404 when absent or deleted."""
    from reco.store.entities import get_user as store_get_user

    stored = store_get_user(state.engine, user_id)
    if stored is None:
        raise _no_user(user_id)
    return UserOut.model_validate(stored)


@router.delete(
    "/{user_id}", status_code=204, response_class=Response, responses=problems(*WRITE, 404)
)
def delete_user(_key: WriteKey, state: State, user_id: PathId) -> Response:
    """Delete a user and their events; from now on they are served as a new user."""
    from reco.store.entities import delete_user as store_delete_user

    if not store_delete_user(state.engine, user_id):
        raise _no_user(user_id)
    forget_answers(state, [user_id])
    return Response(status_code=204)


def _no_user(user_id: str) -> Problem:
    return Problem(
        404,
        f"there is no user {user_id[:100]!r} in the store (never stored, or deleted); "
        f"create one with PUT /v1/users/{{user_id}}",
        kind="unknown-user",
    )
