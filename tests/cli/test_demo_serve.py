"""The demo's last step: `reco serve` started for real on loopback with a new read key,
one request answered, and a printed curl line that works while the service is up."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reco.cli.common import settings_from_env
from reco.cli.demo import curl_line, pick_port, serve_demo
from reco.cli.main import app
from reco.service.keys import list_keys
from reco.store.db import open_store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def trained_env(tmp_path, monkeypatch):
    """RECO_HOME with a small model trained by `reco train` (seconds), and a free port."""
    rng = np.random.default_rng(5)
    rows = [
        (f"u{u}", f"i{item}", 1_700_000_000 + u * 100 + k)
        for u in range(40)
        for k, item in enumerate(rng.choice(60, 10, replace=False))
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(
        tmp_path / "events.csv", index=False
    )
    monkeypatch.setenv("RECO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECO_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECO_REDIS_URL", raising=False)
    monkeypatch.setenv("RECO_SERVICE__PORT", str(_free_port()))
    result = CliRunner().invoke(app, ["train", "--interactions", str(tmp_path / "events.csv")])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_the_printed_curl_line_answers_while_the_service_is_up(trained_env, capsys):
    settings = settings_from_env()
    engine = open_store(settings.resolved_database_url)
    answers = []

    def run_curl(line: str) -> None:
        done = subprocess.run(
            [*shlex.split(line), "-w", "\n%{http_code}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        body, status = done.stdout.rsplit("\n", 1)
        answers.append((status, json.loads(body)))

    try:
        serve_demo(settings, engine, "u1", interactive=False, while_serving=run_curl)
        keys = list_keys(engine)
    finally:
        engine.dispose()
    ((status, body),) = answers
    assert status == "200"
    assert body["user_id"] == "u1" and len(body["items"]) == 5
    assert body["model_version"] and body["recommendation_id"]
    out = capsys.readouterr().out
    assert "curl -s -H 'Authorization: Bearer reco_" in out
    assert '"items"' in out and "HTTP 200" in out
    assert "reco serve" in out and "stopped" in out
    # A read key only, kept for the next `reco serve`; the service is gone.
    assert [(k.name, k.role.value, k.revoked_at) for k in keys] == [("demo", "read", None)]
    assert _refused(settings.service.port)


def test_a_busy_preferred_port_gives_another_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = pick_port(taken)
    assert chosen != taken and chosen > 0
    assert pick_port(chosen) == chosen


def test_the_curl_line_quotes_for_the_shell():
    line = curl_line("http://127.0.0.1:8000/v1/users/a%20b/recommendations?n=5&x=1", "reco_k_s")
    assert shlex.split(line) == [
        "curl",
        "-s",
        "-H",
        "Authorization: Bearer reco_k_s",
        "http://127.0.0.1:8000/v1/users/a%20b/recommendations?n=5&x=1",
    ]
