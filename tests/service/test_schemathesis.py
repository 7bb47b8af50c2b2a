"""Schemathesis against the service's own OpenAPI (in process, no network): generated
requests, valid and invalid, to every operation with an admin key; no answer may be
a 5xx, and every answer must match the documented status codes, content type and
schema.

(schemathesis' lazy pytest loader does not run under pytest 9, so each operation is
driven through its Hypothesis strategy directly.)
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reco.config import ServiceConfig, Settings
from reco.service.app import create_app

from .conftest import TEST_SERVICE, add_keys, copy_home

# Bounded for CI; RECO_FUZZ_EXAMPLES=500 for a deeper run.
EXAMPLES_PER_OPERATION = int(os.environ.get("RECO_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Building the app runs nothing (no store, no model): its OpenAPI names the operations.
_SPEC = create_app(Settings()).openapi()["paths"]
OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, methods in _SPEC.items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # Negative cases need something to break: parameters or a body.
    if mode is GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
]


@pytest.fixture(scope="module")
def fuzzed(trained_home, tmp_path_factory):
    """(schema, admin headers) of a running app on its own copy of the trained home."""
    home = copy_home(trained_home, tmp_path_factory.mktemp("fuzz"))
    settings = Settings(home=home, service=ServiceConfig(**TEST_SERVICE))
    keys, _ = add_keys(settings)
    app = create_app(settings)
    with TestClient(app):  # the lifespan runs for the whole module
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema, {"Authorization": f"Bearer {keys['admin']}"}
    schemathesis.python.asgi.shutdown_lifespans()


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_the_api_holds_its_contract(fuzzed, method, path, mode):
    schema, admin = fuzzed
    operation = schema[path][method]

    @hypothesis.given(case=operation.as_strategy(mode))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def holds(case):
        response = case.call(headers=admin)
        case.validate_response(response, checks=CHECKS, headers=admin)

    holds()
