"""`reco serve` refuses unsafe bindings (exit code 2) and pins math to one thread."""

from __future__ import annotations

import os

import pytest
from threadpoolctl import threadpool_info
from typer.testing import CliRunner

from reco.cli.main import app as cli
from reco.config import ServiceConfig, Settings
from reco.service import serve

from .conftest import add_keys


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host, loopback):
    assert serve.is_loopback(host) is loopback


def test_loopback_is_always_allowed(tmp_path):
    for auth in (True, False):
        settings = Settings(home=tmp_path, service=ServiceConfig(auth_enabled=auth))
        assert serve.check_binding(settings) is None


def test_beyond_loopback_needs_auth_and_an_active_key(tmp_path):
    exposed = ServiceConfig(host="0.0.0.0")
    no_auth = Settings(home=tmp_path, service=exposed.model_copy(update={"auth_enabled": False}))
    assert "auth disabled" in serve.check_binding(no_auth).message
    settings = Settings(home=tmp_path, service=exposed)
    assert "no active API key" in serve.check_binding(settings).message
    add_keys(settings)
    assert serve.check_binding(settings) is None


def test_the_cli_refuses_with_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == serve.REFUSED
    assert "no active API key" in result.output and "reco keys create" in result.output
    monkeypatch.setenv("RECO_SERVICE__AUTH_ENABLED", "false")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == serve.REFUSED and "auth disabled" in result.output


def test_workers_get_one_math_thread(monkeypatch):
    for name in serve.THREAD_VARIABLES:
        monkeypatch.setenv(name, "8")
    limiter = serve.single_threaded_math()
    try:
        assert all(os.environ[name] == "1" for name in serve.THREAD_VARIABLES)
        assert all(lib["num_threads"] == 1 for lib in threadpool_info())
    finally:
        limiter.restore_original_limits()


def test_several_workers_without_redis_are_warned_about_private_caches(tmp_path):
    def settings(**changes) -> Settings:
        redis_url = changes.pop("redis_url", None)
        return Settings(home=tmp_path, redis_url=redis_url, service=ServiceConfig(**changes))

    assert serve.multi_worker_warning(settings(workers=1)) is None
    assert "RECO_REDIS_URL" in serve.multi_worker_warning(settings(workers=2))
    assert serve.multi_worker_warning(settings(workers=2, redis_url="redis://x")) is None
    assert serve.multi_worker_warning(settings(workers=2, cache_enabled=False)) is None
