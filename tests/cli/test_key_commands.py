"""`reco keys create|list|revoke` against a real SQLite store under RECO_HOME."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from reco.cli.main import app
from reco.errors import ValidationError
from reco.service.keys import Role, verify_key
from reco.store.db import open_store
from reco.store.tables import api_keys

SECRET = re.compile(r"reco_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture()
def env(tmp_path):
    return {"RECO_HOME": str(tmp_path / "home"), "RECO_DATABASE_URL": "", "COLUMNS": "200"}


def invoke(env, *args):
    return CliRunner().invoke(app, ["keys", *args], env=env)


def engine_of(env):
    return open_store(f"sqlite:///{env['RECO_HOME']}/reco.db")


def test_create_prints_the_secret_once_with_a_warning_and_it_verifies(env):
    result = invoke(env, "create", "--name", "mobile", "--role", "write")
    assert result.exit_code == 0, result.output
    secrets_shown = SECRET.findall(result.output)
    assert len(secrets_shown) == 1
    assert "not kept" in result.output and "cannot be shown again" in result.output
    engine = engine_of(env)
    record = verify_key(engine, secrets_shown[0])
    assert record is not None and record.name == "mobile" and record.role is Role.WRITE
    assert record.key_id in result.output
    engine.dispose()


def test_role_defaults_to_read(env):
    result = invoke(env, "create", "--name", "dashboard")
    assert result.exit_code == 0, result.output
    engine = engine_of(env)
    assert verify_key(engine, SECRET.search(result.output).group()).role is Role.READ
    engine.dispose()


def test_list_shows_ids_names_roles_and_revocation_but_never_secrets_or_hashes(env):
    made = [
        invoke(env, "create", "--name", name, "--role", role)
        for name, role in [("alpha", "read"), ("beta", "admin")]
    ]
    secrets_made = [SECRET.search(r.output).group() for r in made]
    key_ids = [s.split("_")[1] for s in secrets_made]
    assert invoke(env, "revoke", key_ids[0]).exit_code == 0

    result = invoke(env, "list")
    assert result.exit_code == 0, result.output
    for header in ("id", "name", "role", "created", "revoked"):
        assert header in result.output
    alpha, beta = (
        line for line in result.output.splitlines() if key_ids[0] in line or key_ids[1] in line
    )
    assert "alpha" in alpha and "read" in alpha and "UTC" in alpha.split("read", 1)[1]
    assert "beta" in beta and "admin" in beta
    assert beta.count("UTC") == 1 and alpha.count("UTC") == 2  # created; created + revoked
    engine = engine_of(env)
    with engine.connect() as connection:
        hashes = connection.execute(select(api_keys.c.key_hash)).scalars().all()
    engine.dispose()
    for text in [*secrets_made, *hashes]:
        assert text not in result.output
    for secret in secrets_made:
        # reco_<key id>_<random part>; the random part may itself hold "_" (base64url).
        assert secret.split("_", 2)[2] not in result.output


def test_list_with_no_keys_says_how_to_create_one(env):
    result = invoke(env, "list")
    assert result.exit_code == 0
    assert "reco keys create" in result.output


def test_revoke_makes_the_secret_stop_working(env):
    secret = SECRET.search(invoke(env, "create", "--name", "leaked").output).group()
    key_id = secret.split("_")[1]
    result = invoke(env, "revoke", key_id)
    assert result.exit_code == 0 and f"revoked key {key_id}" in result.output
    engine = engine_of(env)
    assert verify_key(engine, secret) is None
    engine.dispose()


@pytest.mark.parametrize("key_id", ["0123456789abcdef", "nope", "[bold]x[/]", "ü" * 300])
def test_revoke_unknown_id_fails_with_a_clear_message(env, key_id):
    invoke(env, "create", "--name", "present")
    result = invoke(env, "revoke", key_id)
    assert result.exit_code == 1
    assert "no API key has id" in result.output and "reco keys list" in result.output
    assert repr(key_id) in result.output.replace("\n", "")


def test_unknown_role_is_refused_with_the_choices(env):
    result = invoke(env, "create", "--name", "x", "--role", "owner")
    assert result.exit_code == 2
    assert "read" in result.output and "admin" in result.output


def test_blank_name_is_a_validation_error_and_creates_nothing(env):
    result = invoke(env, "create", "--name", "   ")
    assert result.exit_code == 1
    assert isinstance(result.exception, ValidationError)
    assert "name" in str(result.exception)
    assert "no API keys yet" in invoke(env, "list").output
