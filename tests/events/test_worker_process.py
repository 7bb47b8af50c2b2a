"""`reco worker` as real processes: one is SIGKILLed mid-stream, a second one finishes,
and every accepted event is counted exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from reco.events import RedisStreamsBus, Relay
from reco.features import RedisOnlineFeatures
from reco.store.db import open_store
from reco.store.events import append_events

pytestmark = pytest.mark.redis

TOTAL = 8_000


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """`reco worker` in a process of its own (stderr to a file: a full pipe would block it)."""
    log = open(Path(env["RECO_HOME"]) / f"{name}.log", "wb")  # noqa: SIM115 - outlives this call
    command = "from reco.cli.main import main; main()"
    args = [sys.executable, "-c", command, "worker", "--consumer", name, "--status-every", "1"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)


def pending(client, stream: str) -> int:
    return client.xpending(stream, "workers")["pending"]


def kill_holding_entries(process: subprocess.Popen[bytes], holding) -> None:
    """SIGKILL the worker at a moment it holds delivered, unacknowledged entries:
    freeze it (SIGSTOP), look, and let it run on a little when it holds none."""
    for _ in range(200):
        process.send_signal(signal.SIGSTOP)
        # A command the worker sent just before it stopped (an acknowledgement) still
        # lands: look once it has.
        time.sleep(0.02)
        if holding():
            process.send_signal(signal.SIGKILL)
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("the worker never held pending entries")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, redis_url, redis_client, prefix, events_factory
):
    engine = open_store(f"sqlite:///{tmp_path / 'reco.db'}")
    env = {
        **os.environ,
        "RECO_HOME": str(tmp_path),
        "RECO_REDIS_URL": redis_url,
        "RECO_EVENTS__STREAM": prefix + "stream",
        "RECO_EVENTS__KEY_PREFIX": prefix + "f:",
        "RECO_EVENTS__GROUP": "workers",
        "RECO_EVENTS__CLAIM_IDLE_MS": "300",
        "RECO_EVENTS__PROCESS_BATCH": "200",
        "RECO_SERVICE__CACHE_ENABLED": "false",
    }
    features = RedisOnlineFeatures(redis_client, prefix=prefix + "f:")
    accepted = 0
    for start in range(0, TOTAL, 1_000):
        accepted += append_events(engine, events_factory(1_000, start=start)).accepted
    assert accepted == TOTAL
    # Published ahead, so the first worker has a backlog to be killed in the middle of.
    bus = RedisStreamsBus(redis_client, stream=prefix + "stream", group="workers")
    relay = Relay(engine, bus, batch_size=2_000)
    while relay.run_once():
        pass

    first = start_worker(env, "first")
    try:
        wait_for(lambda: features.events_applied() >= 1_500, 60, "the first worker to start")
        kill_holding_entries(first, lambda: pending(redis_client, prefix + "stream") > 0)
    finally:
        first.kill()
        first.wait()
    killed_at = features.events_applied()
    assert pending(redis_client, prefix + "stream") > 0
    assert killed_at < TOTAL, "the worker finished before it could be killed mid-stream"
    # More events arrive while no worker runs: they wait in the store.
    for start in range(TOTAL, TOTAL + 2_000, 500):
        accepted += append_events(engine, events_factory(500, start=start)).accepted

    second = start_worker(env, "second")
    try:
        wait_for(lambda: features.events_applied() >= accepted, 60, "the second worker")
        time.sleep(0.5)  # anything counted twice would show up now
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    log = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, log
    assert features.events_applied() == accepted
    assert int(features.item_counts([f"i{k}" for k in range(13)]).sum()) == accepted
    assert redis_client.xpending(prefix + "stream", "workers")["pending"] == 0
    # What the first worker held when it died was taken over by the second.
    assert "claimed" in log
    engine.dispose()


def test_the_workers_invalidations_reach_every_service_workers_cache(redis_url, tmp_path):
    from reco.cli.worker_commands import _cache_invalidator
    from reco.config import Settings
    from reco.service.cache import TwoLevelCache, cache_for

    settings = Settings(home=tmp_path, redis_url=redis_url)
    service_cache = cache_for(settings)  # what each service worker answers through
    assert isinstance(service_cache, TwoLevelCache)
    users = [f"worker-test-{uuid.uuid4().hex[:8]}-{k}" for k in range(3)]
    try:
        for user in users:
            service_cache.put(user, "n=10", "v1", b"answer")
        _cache_invalidator(settings)(users[:2])
        # Gone from Redis at once, and from the service worker's memory once the
        # announcement arrives.
        wait_for(
            lambda: all(service_cache.local.get(u, "n=10", "v1") is None for u in users[:2]),
            5,
            "the invalidations to reach the memory cache",
        )
        assert [service_cache.get(u, "n=10", "v1") for u in users] == [None, None, b"answer"]
    finally:
        service_cache.close()
