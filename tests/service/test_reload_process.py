"""A real `reco serve` with two uvicorn workers: versions change under load (promote
through the API, roll back with `reco models rollback`) without one failed request,
and every worker ends up serving the new version (per-worker gauges in /metrics)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import add_keys, copy_home

REPO = Path(__file__).resolve().parents[2]
RECO = Path(sys.executable).parent / "reco"
START_SECONDS = 120  # two workers import numpy, scipy, LightGBM, torch on 2 cores


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def server(tmp_path, trained_home) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """(base URL, admin headers, environment) of `reco serve --workers 2` on a copy."""
    from reco.config import Settings

    home = copy_home(trained_home, tmp_path)
    keys, _ = add_keys(Settings(home=home))
    port = free_port()
    env = {
        **os.environ,
        "RECO_HOME": str(home),
        "RECO_SERVICE__RELOAD_CHECK_SECONDS": "0.2",
        "RECO_SERVICE__RATE_LIMIT_PER_SECOND": "100000",
        "RECO_SERVICE__RATE_LIMIT_BURST": "100000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(RECO), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"reco serve exited: {(tmp_path / 'serve.log').read_text()[-3000:]}")
            try:
                if len(worker_versions(base)) == 2:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"reco serve did not start: {(tmp_path / 'serve.log').read_text()[-3000:]}")
        yield base, {"Authorization": f"Bearer {keys['admin']}"}, env
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def worker_versions(base: str) -> dict[str, str]:
    """pid -> the model version each live worker reports serving (gauge at 1)."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found = re.findall(r'reco_model_info\{pid="(\d+)",version="([^"]+)"\} 1\.0', text)
    return dict(found)


def test_versions_change_under_load_without_a_failed_request(server, trained_home):
    base, admin, env = server
    current, other = trained_home.versions
    outcomes: list[tuple[int | str, str]] = []
    stop = threading.Event()

    def load(user_ids: list[str]) -> None:
        with httpx.Client(base_url=base, headers=admin, timeout=30) as client:
            k = 0
            while not stop.is_set():
                user = user_ids[k % len(user_ids)]
                k += 1
                try:
                    response = client.get(f"/v1/users/{user}/recommendations?n=5&k={k}")
                    ok = response.status_code == 200 and len(response.json()["items"]) == 5
                    outcomes.append(
                        (response.status_code if ok else response.text[:200],
                         response.headers.get("X-Model-Version", "?"))
                    )  # fmt: skip
                except httpx.HTTPError as exc:
                    outcomes.append((repr(exc), "?"))

    threads = [
        threading.Thread(target=load, args=([str(u) for u in range(1, 60)],)),
        threading.Thread(target=load, args=([f"new-{u}" for u in range(30)],)),
        threading.Thread(target=load, args=([str(u) for u in range(60, 150)],)),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        promoted = httpx.post(f"{base}/v1/models/{other}/promote", headers=admin, timeout=60)
        assert promoted.status_code == 200, promoted.text
        assert promoted.headers["X-Model-Version"] == other
        assert wait_until(lambda: set(worker_versions(base).values()) == {other})
        time.sleep(1.0)
        # Back with the CLI, as an operator would: the workers follow the registry.
        rolled = subprocess.run(
            [str(RECO), "models", "rollback"], env=env, capture_output=True, text=True
        )
        assert rolled.returncode == 0, rolled.stderr
        assert wait_until(lambda: set(worker_versions(base).values()) == {current})
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failures = [o for o in outcomes if o[0] != 200]
    assert failures == [], failures[:5]
    assert len(outcomes) > 50
    versions_seen = [version for _, version in outcomes]
    assert set(versions_seen) == {current, other}
    assert versions_seen[-1] == current
    assert len(worker_versions(base)) == 2


def wait_until(condition, seconds: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
