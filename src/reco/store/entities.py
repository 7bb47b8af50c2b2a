"""Users and items one at a time, for the service: PUT, GET and DELETE.

A PUT replaces everything about the entity (fields not given are cleared; attributes
are replaced, not merged), keeps ``created_at``, sets ``updated_at`` and clears any
tombstone, so a deleted user or item comes back. A DELETE leaves a tombstone
(``deleted_at``) with the attributes emptied, so every worker and the next training run
know it is gone; deleting a user also deletes their interactions (the right to be
forgotten) in the same transaction. Each call is one or two single-row statements.

Every id and value is checked before the database sees it; problems raise one
:class:`~reco.errors.ValidationError` naming the field, what is wrong and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, exists, false, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reco.data import schema
from reco.errors import ValidationError
from reco.store.db import is_postgres, write_transaction
from reco.store.tables import MAX_ID_LENGTH, interactions, items, users

__all__ = [
    "delete_item",
    "delete_user",
    "get_item",
    "get_user",
    "id_problem",
    "put_item",
    "put_user",
    "unavailable_items",
    "user_state",
    "user_state_on",
]

# Ids may not hold control characters (C0, DEL, C1) nor unpaired surrogates, which
# cannot be encoded as UTF-8; free text may hold newlines and tabs, not NUL
# (PostgreSQL text and jsonb cannot store it) nor surrogates.
_BAD_ID_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_TEXT_CHARACTER = re.compile(r"[\x00\ud800-\udfff]")
# Ids looked up per statement in the bulk lookups (well under every backend's limit).
_LOOKUP_CHUNK = 500
# Columns of their own, which an attribute may not shadow.
_USER_FIELDS = frozenset({schema.USER})
_ITEM_FIELDS = frozenset({schema.ITEM, "title", "text", "categories", "available"})


def _shown(value: Any) -> str:
    """A value for a message: repr, cut short (a hostile 10 kB id must not flood logs)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an id (user, item, event, event type), or None if it can.

    An id is a string (an integer is taken as its decimal text), not blank, at most
    :data:`~reco.store.tables.MAX_ID_LENGTH` characters, without control characters.
    The answer is "<what is wrong>; <how to fix it>".
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return (
            f"{_shown(value)} is a {type(value).__name__}; give the id as a string "
            f"(up to {MAX_ID_LENGTH} characters)"
        )
    text = str(value)
    if not text.strip():
        return "is empty; give a non-empty id"
    if len(text) > MAX_ID_LENGTH:
        return (
            f"is {len(text)} characters long; ids may be at most {MAX_ID_LENGTH} "
            "characters (shorten it, e.g. replace it with a hash of itself)"
        )
    bad = _BAD_ID_CHARACTER.search(text)
    if bad:
        return (
            f"{_shown(text)} contains U+{ord(bad.group()):04X} at position {bad.start()}, "
            "and ids may not hold control characters or unpaired surrogates; remove it"
        )
    return None


def _checked_id(value: Any, field: str, kind: str) -> str:
    problem = id_problem(value)
    if problem:
        raise ValidationError([f"{field}: {problem}."], source=kind)
    return str(value)


def _text_problem(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{field}: {_shown(value)} is a {type(value).__name__}; give text or null."
    bad = _BAD_TEXT_CHARACTER.search(value)
    if bad:
        return (
            f"{field}: contains U+{ord(bad.group()):04X} at position {bad.start()}, which "
            "cannot be stored; remove it."
        )
    return None


def _attribute_problems(attributes: Any, reserved: frozenset[str]) -> list[str]:
    """Attributes are a flat JSON object: string keys, values string / number / bool /
    null. Training turns each attribute into a column of user or item features, so a
    nested value (list, object) would have no meaning there."""
    if attributes is None:
        return []
    if not isinstance(attributes, Mapping):
        return [
            f"attributes: {_shown(attributes)} is a {type(attributes).__name__}; give an "
            'object such as {"country": "FR", "age": 31}.'
        ]
    problems = []
    for key, value in attributes.items():
        if not isinstance(key, str) or not key.strip():
            problems.append(
                f"attributes: the key {_shown(key)} is not a non-empty string; name every "
                "attribute with text."
            )
            continue
        where = f"attributes.{_shown(key)[1:-1]}"
        if key in reserved:
            problems.append(
                f"{where}: {key!r} is a field of its own, not an attribute; give it as "
                f"that field (attributes may not use {', '.join(sorted(reserved))})."
            )
        elif _BAD_TEXT_CHARACTER.search(key):
            problems.append(f"{where}: the key contains NUL or a lone surrogate; remove it.")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: {value!r} is not a finite number; give one or null.")
        elif isinstance(value, str):
            if problem := _text_problem(value, where):
                problems.append(problem)
        elif value is not None and not isinstance(value, bool | int | float):
            problems.append(
                f"{where}: {_shown(value)} is a {type(value).__name__}; attribute values "
                "must be a string, a number, true/false or null (flatten nested values "
                "into attributes of their own)."
            )
    return problems


def _attributes_json(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes to store: null values left out, as ingest leaves out empty cells."""
    return {k: v for k, v in (attributes or {}).items() if v is not None}


def _categories_problems(categories: Any) -> list[str]:
    if categories is None:
        return []
    if isinstance(categories, str) or not isinstance(categories, Sequence):
        return [
            f"categories: {_shown(categories)} is not a list; give a list of strings such "
            'as ["drama", "comedy"].'
        ]
    problems = []
    for position, category in enumerate(categories):
        where = f"categories[{position}]"
        if not isinstance(category, str) or not category.strip():
            problems.append(f"{where}: {_shown(category)} is not a non-empty string; fix it.")
        elif schema.CATEGORY_SEPARATOR in category:
            problems.append(
                f"{where}: {_shown(category)} contains {schema.CATEGORY_SEPARATOR!r}, which "
                "separates categories in the store; give each category as its own entry."
            )
        elif _BAD_ID_CHARACTER.search(category):
            problems.append(f"{where}: {_shown(category)} contains a control character; remove it.")
    return problems


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; the store writes UTC.
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _insert(engine: Engine | Connection) -> Any:
    return pg_insert if is_postgres(engine) else sqlite_insert


def _lookup_chunks(ids: Sequence[Any]) -> list[list[str]]:
    """Distinct valid ids in chunks; an id that cannot be stored has no row anyway."""
    valid = list(dict.fromkeys(str(i) for i in ids if id_problem(i) is None))
    return [valid[k : k + _LOOKUP_CHUNK] for k in range(0, len(valid), _LOOKUP_CHUNK)]


# -- users ------------------------------------------------------------------------------


def _user_dict(row: Any) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "attributes": dict(row.attributes or {}),
        "created_at": _aware(row.created_at),
        "updated_at": _aware(row.updated_at),
    }


def put_user(engine: Engine, user_id: str, attributes: Mapping[str, Any] | None) -> dict:
    """Create or fully replace a user; a deleted user comes back. Returns it as stored.

    ``attributes`` (a flat object: device, country, age, ...) replaces the stored ones;
    null values are left out. Raises ValidationError (nothing stored) listing every
    problem with the id and the attributes.
    """
    problems = [f"user_id: {p}." for p in [id_problem(user_id)] if p]
    problems += _attribute_problems(attributes, _USER_FIELDS)
    if problems:
        raise ValidationError(problems, source="user")
    now = datetime.now(UTC)
    statement = _insert(engine)(users).values(
        user_id=str(user_id),
        attributes=_attributes_json(attributes),
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[users.c.user_id],
        set_={
            "attributes": statement.excluded.attributes,
            "updated_at": statement.excluded.updated_at,
            "deleted_at": None,
        },
    ).returning(users.c.user_id, users.c.attributes, users.c.created_at, users.c.updated_at)
    with write_transaction(engine) as connection:
        return _user_dict(connection.execute(statement).one())


def get_user(engine: Engine, user_id: str) -> dict | None:
    """The user as stored (``user_id``, ``attributes``, ``created_at``, ``updated_at``);
    None when there is no such user or it was deleted."""
    user_id = _checked_id(user_id, "user_id", "user")
    query = select(users.c.user_id, users.c.attributes, users.c.created_at, users.c.updated_at)
    query = query.where(users.c.user_id == user_id, users.c.deleted_at.is_(None))
    with engine.connect() as connection:
        row = connection.execute(query).one_or_none()
    return None if row is None else _user_dict(row)


_USER_STATE = select(users.c.attributes, users.c.deleted_at).where(
    users.c.user_id == bindparam("user_id")
)


def user_state(engine: Engine, user_id: str) -> tuple[dict[str, Any], bool]:
    """What serving a user needs from the store, in one query: their stored attributes
    (empty when none) and whether they were deleted (tombstoned)."""
    with engine.connect() as connection:
        return user_state_on(connection, user_id)


def user_state_on(connection: Connection, user_id: str) -> tuple[dict[str, Any], bool]:
    """:func:`user_state` on an open connection (to share it with other reads)."""
    user_id = _checked_id(user_id, "user_id", "user")
    row = connection.execute(_USER_STATE, {"user_id": user_id}).one_or_none()
    if row is None:
        return {}, False
    if row.deleted_at is not None:
        return {}, True
    return dict(row.attributes or {}), False


def delete_user(engine: Engine, user_id: str) -> bool:
    """Forget a user: tombstone their row (attributes emptied) and delete every
    interaction of theirs, in one transaction.

    Returns False (and changes nothing) when the store knows nothing of the user: no
    live row and no interactions. A user known only from events gets a tombstone too.
    """
    user_id = _checked_id(user_id, "user_id", "user")
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        live = connection.execute(
            select(exists().where(users.c.user_id == user_id, users.c.deleted_at.is_(None)))
        ).scalar_one()
        removed = connection.execute(
            delete(interactions).where(interactions.c.user_id == user_id)
        ).rowcount
        if not live and not removed:
            return False
        statement = _insert(connection)(users).values(
            user_id=user_id, attributes={}, created_at=now, updated_at=now, deleted_at=now
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[users.c.user_id],
                set_={"attributes": {}, "updated_at": now, "deleted_at": now},
            )
        )
    return True


# -- items ------------------------------------------------------------------------------

_ITEM_COLUMNS = (
    items.c.item_id,
    items.c.title,
    items.c.text,
    items.c.categories,
    items.c.available,
    items.c.attributes,
    items.c.created_at,
    items.c.updated_at,
)


def _split_categories(joined: str | None) -> list[str]:
    if not joined:
        return []
    return [c for c in joined.split(schema.CATEGORY_SEPARATOR) if c]


def _item_dict(row: Any) -> dict[str, Any]:
    return {
        "item_id": row.item_id,
        "title": row.title,
        "text": row.text,
        "categories": _split_categories(row.categories),
        "available": bool(row.available),
        "attributes": dict(row.attributes or {}),
        "created_at": _aware(row.created_at),
        "updated_at": _aware(row.updated_at),
    }


def put_item(
    engine: Engine,
    item_id: str,
    *,
    title: str | None = None,
    text: str | None = None,
    categories: Sequence[str] | None = None,
    available: bool = True,
    attributes: Mapping[str, Any] | None = None,
) -> dict:
    """Create or fully replace an item; a deleted item comes back. Returns it as stored.

    Every field is replaced, so one not given is cleared (``available`` defaults to
    true). ``categories`` is stored ``|``-joined, as ingest stores it. Raises
    ValidationError (nothing stored) listing every problem.
    """
    problems = [f"item_id: {p}." for p in [id_problem(item_id)] if p]
    problems += [p for p in (_text_problem(title, "title"), _text_problem(text, "text")) if p]
    problems += _categories_problems(categories)
    if not isinstance(available, bool):
        problems.append(f"available: {_shown(available)} is not a boolean; give true or false.")
    problems += _attribute_problems(attributes, _ITEM_FIELDS)
    if problems:
        raise ValidationError(problems, source="item")
    now = datetime.now(UTC)
    values = {
        "title": title,
        "text": text,
        "categories": schema.CATEGORY_SEPARATOR.join(categories) if categories else None,
        "available": available,
        "attributes": _attributes_json(attributes),
    }
    statement = _insert(engine)(items).values(
        item_id=str(item_id), created_at=now, updated_at=now, deleted_at=None, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=[items.c.item_id],
        set_={
            **{name: statement.excluded[name] for name in values},
            "updated_at": statement.excluded.updated_at,
            "deleted_at": None,
        },
    ).returning(*_ITEM_COLUMNS)
    with write_transaction(engine) as connection:
        return _item_dict(connection.execute(statement).one())


def get_item(engine: Engine, item_id: str) -> dict | None:
    """The item as stored (categories as a list); None when absent or deleted. An
    unavailable item is returned, with ``available`` false."""
    item_id = _checked_id(item_id, "item_id", "item")
    query = select(*_ITEM_COLUMNS).where(items.c.item_id == item_id, items.c.deleted_at.is_(None))
    with engine.connect() as connection:
        row = connection.execute(query).one_or_none()
    return None if row is None else _item_dict(row)


def delete_item(engine: Engine, item_id: str) -> bool:
    """Tombstone an item so that it is never recommended again (see
    :func:`unavailable_items`); its fields are cleared, other users' interactions with
    it are kept.

    Returns False (and changes nothing) when the item is already deleted or the store
    knows nothing of it (no row, no interactions). An item known only from events gets
    a tombstone too.
    """
    item_id = _checked_id(item_id, "item_id", "item")
    now = datetime.now(UTC)
    cleared = {"title": None, "text": None, "categories": None, "attributes": {}}
    with write_transaction(engine) as connection:
        row = connection.execute(
            select(items.c.deleted_at).where(items.c.item_id == item_id).with_for_update()
        ).one_or_none()
        if row is not None:
            if row.deleted_at is not None:
                return False
            connection.execute(
                update(items)
                .where(items.c.item_id == item_id)
                .values(updated_at=now, deleted_at=now, **cleared)
            )
            return True
        known_from_events = connection.execute(
            select(exists().where(interactions.c.item_id == item_id))
        ).scalar_one()
        if not known_from_events:
            return False
        statement = _insert(connection)(items).values(
            item_id=item_id, created_at=now, updated_at=now, deleted_at=now, **cleared
        )
        connection.execute(statement.on_conflict_do_nothing(index_elements=[items.c.item_id]))
    return True


def unavailable_items(engine: Engine) -> set[str]:
    """Ids of every item that must not be recommended: marked unavailable or deleted."""
    query = select(items.c.item_id).where(
        or_(items.c.available == false(), items.c.deleted_at.is_not(None))
    )
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())
