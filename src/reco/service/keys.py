"""API keys for the service: roles, secrets shown once, only their SHA-256 stored.

A secret reads ``reco_<key_id>_<token>``: the key id is public (it names the key in
``reco keys list`` and logs), the token is 32 random bytes. Verifying a secret finds
the row by its key id and compares SHA-256 digests in constant time, so neither the
answer nor its timing tells a caller how close a guess came.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Engine, exists, select, update

from reco.errors import ValidationError
from reco.store.db import write_transaction
from reco.store.tables import api_keys

SECRET_PREFIX = "reco_"
# 8 random bytes as hex: short enough to type, unique enough to never collide in practice.
_KEY_ID_BYTES = 8
_TOKEN_BYTES = 32
# Anything else (wrong length, other characters, unicode, 10 kB) is refused before hashing
# or touching the database; fullmatch, so a trailing newline does not slip through.
_SECRET_PATTERN = re.compile(r"reco_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
_NAME_MAX = api_keys.c.name.type.length
# Compared against when the key id is unknown, so that case costs the same as a bad token.
_NO_HASH = "0" * 64


class Role(StrEnum):
    """What a key may do; each role includes the ones before it: read < write < admin."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """True when this role is ``needed`` or above it."""
        order = list(Role)
        return order.index(self) >= order.index(Role(needed))


@dataclass(frozen=True)
class ApiKey:
    """A key as stored, without its secret (which is never kept)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def parse_role(role: Role | str) -> Role:
    """``role`` as a Role; a ValidationError listing the choices otherwise."""
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise ValidationError(
            [f"role {role!r} is not a role; use one of: {choices}"], source="API key"
        ) from None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(
            ["name must be a non-empty text, e.g. --name mobile-app"], source="API key"
        )
    name = name.strip()
    if len(name) > _NAME_MAX:
        raise ValidationError(
            [f"name is {len(name)} characters long; use at most {_NAME_MAX}"], source="API key"
        )
    if any(not ch.isprintable() for ch in name):
        raise ValidationError(
            ["name contains control characters; use printable text only"], source="API key"
        )
    return name


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; the store writes UTC.
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(row) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        role=Role(row.role),
        created_at=_aware(row.created_at),
        revoked_at=_aware(row.revoked_at),
    )


def create_key(engine: Engine, name: str, role: Role | str) -> tuple[ApiKey, str]:
    """Create a key; returns its record and its secret, which is shown this once only."""
    name = _check_name(name)
    role = parse_role(role)
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(_TOKEN_BYTES)}"
    record = ApiKey(key_id, name, role, datetime.now(UTC), None)
    with write_transaction(engine) as connection:
        connection.execute(
            api_keys.insert().values(
                key_id=key_id,
                name=name,
                role=role.value,
                key_hash=_digest(secret),
                created_at=record.created_at,
            )
        )
    return record, secret


def verify_key(engine: Engine, secret: object) -> ApiKey | None:
    """The active key whose secret this is; None for anything else, never an exception.

    Unknown, revoked, malformed, empty, huge or non-text secrets all give None. Database
    errors do propagate: an unreachable store is not a wrong key.
    """
    if not isinstance(secret, str):
        return None
    match = _SECRET_PATTERN.fullmatch(secret)
    if match is None:
        return None
    with engine.connect() as connection:
        row = connection.execute(
            select(api_keys).where(api_keys.c.key_id == match.group(1))
        ).one_or_none()
    stored = row.key_hash if row is not None else _NO_HASH
    if not hmac.compare_digest(_digest(secret), stored) or row is None:
        return None
    if row.revoked_at is not None:
        return None
    return _record(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        ).all()
    return [_record(row) for row in rows]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key for good; False when no key has this id (revoking twice is True)."""
    if not isinstance(key_id, str) or _KEY_ID_PATTERN.fullmatch(key_id) is None:
        return False
    with write_transaction(engine) as connection:
        known = connection.execute(
            select(api_keys.c.key_id).where(api_keys.c.key_id == key_id)
        ).one_or_none()
        if known is None:
            return False
        connection.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return True


def has_active_keys(engine: Engine) -> bool:
    """True when at least one key is not revoked."""
    with engine.connect() as connection:
        return bool(
            connection.execute(select(exists().where(api_keys.c.revoked_at.is_(None)))).scalar()
        )
