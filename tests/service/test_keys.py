"""API keys on SQLite and PostgreSQL: roles, hash-only storage, revoke, hostile input."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from reco.errors import ValidationError
from reco.service.keys import (
    ApiKey,
    Role,
    create_key,
    has_active_keys,
    list_keys,
    revoke_key,
    verify_key,
)
from reco.store.tables import api_keys


def test_roles_are_ordered_read_write_admin():
    assert Role.READ.allows(Role.READ)
    assert not Role.READ.allows(Role.WRITE)
    assert not Role.READ.allows(Role.ADMIN)
    assert Role.WRITE.allows(Role.READ) and Role.WRITE.allows(Role.WRITE)
    assert not Role.WRITE.allows(Role.ADMIN)
    assert all(Role.ADMIN.allows(role) for role in Role)
    assert Role.WRITE.allows("read")


def test_create_returns_a_record_and_a_secret_of_the_documented_form(store):
    record, secret = create_key(store, "mobile app", "write")
    assert isinstance(record, ApiKey)
    assert record.name == "mobile app" and record.role is Role.WRITE
    assert record.revoked_at is None
    assert record.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - record.created_at).total_seconds()) < 60
    match = re.fullmatch(r"reco_([0-9a-f]+)_([A-Za-z0-9_-]+)", secret)
    assert match and match.group(1) == record.key_id
    assert len(match.group(2)) >= 43  # token_urlsafe(32)
    assert verify_key(store, secret) == record


def test_only_the_sha256_of_the_secret_is_stored(store):
    _record, secret = create_key(store, "batch job", Role.ADMIN)
    # reco_<hex key id>_<token>: the token itself may hold "_" (URL-safe base64).
    token = secret.split("_", 2)[2]
    with store.connect() as connection:
        rows = [tuple(row) for row in connection.execute(select(api_keys)).all()]
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert secret not in stored and token not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored


def test_each_key_gets_its_own_id_and_secret(store):
    made = [create_key(store, f"key {i}", "read") for i in range(5)]
    assert len({record.key_id for record, _ in made}) == 5
    assert len({secret for _, secret in made}) == 5
    for record, secret in made:
        assert verify_key(store, secret).key_id == record.key_id


def test_list_shows_every_key_oldest_first(store):
    first, _ = create_key(store, "first", "read")
    second, _ = create_key(store, "second", "admin")
    revoke_key(store, first.key_id)
    listed = list_keys(store)
    assert [k.key_id for k in listed] == [first.key_id, second.key_id]
    assert listed[0].revoked_at is not None and listed[1].revoked_at is None
    assert [k.role for k in listed] == [Role.READ, Role.ADMIN]


def test_revoked_key_no_longer_verifies(store):
    record, secret = create_key(store, "leaked", "write")
    other, other_secret = create_key(store, "kept", "write")
    assert revoke_key(store, record.key_id) is True
    assert verify_key(store, secret) is None
    assert verify_key(store, other_secret) == other
    revoked_at = list_keys(store)[0].revoked_at
    assert revoke_key(store, record.key_id) is True  # twice is fine, first time kept
    assert list_keys(store)[0].revoked_at == revoked_at


def test_revoke_unknown_or_hostile_id_is_false(store):
    create_key(store, "a key", "read")
    for key_id in ["0123456789abcdef", "", "'; DROP TABLE api_keys; --", "x" * 10_000, "ü\x00"]:
        assert revoke_key(store, key_id) is False
    assert has_active_keys(store)


def test_has_active_keys_follows_create_and_revoke(store):
    assert has_active_keys(store) is False
    record, _ = create_key(store, "only", "admin")
    assert has_active_keys(store) is True
    revoke_key(store, record.key_id)
    assert has_active_keys(store) is False


def test_wrong_or_tampered_secrets_are_refused(store):
    record, secret = create_key(store, "real", "read")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    other_id = secret.replace(record.key_id, "0" * 16)
    for bad in [flipped, other_id, secret.upper(), secret + "\n", " " + secret, secret[:-1]]:
        assert verify_key(store, bad) is None, bad


# Each list is checked in one test (a store each): migrating a store per value is slow.
GARBAGE_SECRETS = [
    "",
    " ",
    "reco_",
    "Bearer abc",
    "x" * 10_000,
    "reco_" + "a" * 10_000,
    "reco_0123456789abcdef_" + "é" * 43,
    "\ud800",  # lone surrogate: cannot even be encoded as UTF-8
    "\x00" * 64,
    "' OR 1=1 --",
    None,
    12345,
    b"reco_0123456789abcdef_" + b"a" * 43,
]


def test_garbage_secret_gives_none_and_never_raises(store):
    create_key(store, "present", "admin")
    for garbage in GARBAGE_SECRETS:
        assert verify_key(store, garbage) is None, garbage


def test_bad_role_is_a_validation_error_naming_the_choices(store):
    for role in ["owner", "", "READ ", None, 3]:
        with pytest.raises(ValidationError, match="read, write, admin"):
            create_key(store, "name", role)
    assert list_keys(store) == []


def test_bad_name_is_a_validation_error(store):
    for name in ["", "   ", "x" * 256, "tab\there", None]:
        with pytest.raises(ValidationError, match="name"):
            create_key(store, name, "read")
    assert list_keys(store) == []


def test_unicode_name_is_kept(store):
    record, secret = create_key(store, "  équipe données 数据  ", "read")
    assert record.name == "équipe données 数据"
    assert verify_key(store, secret).name == "équipe données 数据"
