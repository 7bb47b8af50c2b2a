"""Freshness benchmark: how soon an event shows in answers, ingestion rates, a soak.

Setup: ml-100k (from ``../shared/data``, ``--data-dir`` or RECO_DATA_DIR) ingested into a
SQLite store in a temporary home and a small pipeline trained on it (ease, itemknn,
als, popularity, segment popularity, trending, content; no two-tower), once per run.
Each scenario serves a fresh copy of that home with ``reco serve`` as a real
subprocess on a free loopback port (``--workers``, default 2: one per core):

* embedded: the in-process bus, every service worker relays and processes itself;
* redis: Redis Streams (``--redis-url``, a stream and key prefix of this run's own,
  removed afterwards); the service only relays and a separate ``reco worker``
  process applies the events.

Numbers:

1. freshness: for a known user, take the first item of their answer, POST a view of
   it, and from the 202 poll their recommendations until the item is gone: p50/p99
   of that time over ``--samples`` events (and how many were fresh on the first
   poll). Next to it, for a second event, the time from its 202 until
   ``GET /v1/events/status`` shows it applied to the online features (trending,
   segments, dislikes, other workers' caches);
2. sustained ingestion with wrk (``--ingest-seconds`` each): one event per POST, and
   batches of 500; events/s acknowledged, and zero lost: every acknowledged event in
   the store, and the online counters equal to the events stored (checked once the
   processors caught up);
3. ``--soak SECONDS`` (default 600; 0 skips it): wrk mixing events and recommendation
   requests, printing the RSS of the service (and worker) at start and end and the
   error count.

Targets (issue 5) are printed next to the numbers, never asserted: embedded p99 under
50 ms, Redis p99 under 500 ms, at least 10,000 events/s in batches and 1,000 events/s
one per request, zero lost, flat memory and zero errors in the soak.

    python benchmarks/freshness.py                      # everything, 10-minute soak
    python benchmarks/freshness.py --soak 60 --samples 100
    python benchmarks/freshness.py --no-redis
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from processes import free_port, log_tail, reco_command, stop_process

ROOT = Path(__file__).resolve().parents[1]
BATCH = 500
READY_TIMEOUT = 300.0
CATCH_UP_TIMEOUT = 300.0
POLL_TIMEOUT = 10.0
RATE_LIMIT = 10_000_000
# Issue 5's targets.
EMBEDDED_P99_MS = 50.0
REDIS_P99_MS = 500.0
BATCH_EVENTS_PER_S = 10_000.0
SINGLE_EVENTS_PER_S = 1_000.0
SOURCES = {
    "ease": 100,
    "itemknn": 100,
    "als": 50,
    "popularity": 30,
    "segment_popularity": 30,
    "trending": 30,
    "content": 30,
}
PARAMS = {"itemknn": {"k": 50}, "als": {"factors": 32, "iterations": 10}, "ease": {"l2": 200.0}}


def say(message: str) -> None:
    """Progress on stderr (tables go to stdout)."""
    print(f"[freshness] {message}", file=sys.stderr, flush=True)


# -- the trained home -----------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """The trained home and what the scenarios need from its data."""

    home: Path
    users: list[str]
    items: list[str]
    n_interactions: int
    version: str
    train_seconds: float


def find_ml100k(data_dir: Path | None) -> Path:
    """The ml-100k folder: --data-dir, RECO_DATA_DIR or ../shared/data."""
    search = [data_dir, os.environ.get("RECO_DATA_DIR"), ROOT.parent / "shared" / "data"]
    for folder in (Path(d) for d in search if d):
        for candidate in (folder, folder / "ml-100k"):
            if (candidate / "u.data").exists():
                return candidate
    raise SystemExit(
        "ml-100k was not found (looked in --data-dir, RECO_DATA_DIR, ../shared/data); "
        "run `reco data fetch ml-100k` and pass --data-dir"
    )


def prepare(home: Path, data: Path) -> Prepared:
    """Ingest ml-100k into ``home`` and train the small pipeline on it (reused when
    ``home`` already holds a trained version: ``--home``)."""
    from reco.config import PipelineConfig, RankerConfig, Settings
    from reco.data.movielens import load_path
    from reco.store.db import open_store
    from reco.store.repository import ingest, load_frames
    from reco.training.job import train

    pipeline = PipelineConfig(
        sources=SOURCES, ranker=RankerConfig(max_rounds=200, early_stopping_rounds=20)
    )
    settings = Settings(home=home, pipeline=pipeline, model_params=PARAMS, redis_url=None)
    from reco.registry import ModelRegistry

    home.mkdir(parents=True, exist_ok=True)
    engine = open_store(settings.resolved_database_url)
    try:
        say(f"ingesting {data} into {home}")
        ingest(engine, load_path(data), source="ml-100k")
        frames = load_frames(engine)
    finally:
        engine.dispose()
    registry = ModelRegistry(settings.models_dir)
    current = registry.current_version() if settings.models_dir.exists() else None
    if current is not None:
        say(f"reusing the trained version {current}")
        version, seconds = current, float("nan")
    else:
        say(f"training on {len(frames.interactions):,} interactions (a minute or so)")
        started = time.perf_counter()
        version = train(frames, settings, progress=lambda m: None).version
        seconds = time.perf_counter() - started
    counts = frames.interactions["item_id"].value_counts()
    return Prepared(
        home=home,
        users=sorted(map(str, frames.interactions["user_id"].unique())),
        items=[str(i) for i in counts.index[:500]],
        n_interactions=len(frames.interactions),
        version=version,
        train_seconds=seconds,
    )


@contextmanager
def run_home(prepared: Prepared, label: str) -> Iterator[Path]:
    """A fresh copy of the trained home for one scenario, with a write key."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=prepared.home.parent))
    try:
        source = sqlite3.connect(prepared.home / "reco.db")
        target = sqlite3.connect(folder / "reco.db")
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        shutil.copytree(prepared.home / "models", folder / "models", symlinks=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_key(home: Path) -> str:
    """A write key (writes events, reads recommendations) in ``home``'s store."""
    from reco.service.keys import Role, create_key
    from reco.store.db import open_store

    engine = open_store(f"sqlite:///{home / 'reco.db'}")
    try:
        return create_key(engine, "bench-freshness", Role.WRITE)[1]
    finally:
        engine.dispose()


def stored_events(home: Path, after: int) -> int:
    """Events stored with an id above ``after``."""
    with sqlite3.connect(home / "reco.db") as connection:
        return connection.execute(
            "SELECT COUNT(*) FROM interactions WHERE id > ?", (after,)
        ).fetchone()[0]


# -- processes --------------------------------------------------------------------------


@dataclass
class Process:
    """A `reco` subprocess with its output in a log file, stopped with SIGTERM."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it (its own session, so a stuck one can be killed as a group)."""
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                [*reco_command(), *self.args],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        """Still running."""
        return self.process is not None and self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of it and its children, MB."""
        if not self.alive():
            return float("nan")
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total / 1e6

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its group if it does not stop in 30 s."""
        stop_process(self.process)

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        return log_tail(self.log_path, lines)


@dataclass
class Scenario:
    """One served copy of the home: the service, maybe a worker, and a client."""

    label: str
    home: Path
    secret: str
    redis_url: str | None
    workers: int
    port: int = field(default_factory=free_port)
    prefix: str = field(default_factory=lambda: f"bench-fresh:{uuid.uuid4().hex[:8]}:")
    processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The parent's environment without RECO_ settings, plus the scenario's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_")}
        env.update(
            RECO_HOME=str(self.home),
            RECO_SERVICE__RATE_LIMIT_PER_SECOND=str(RATE_LIMIT),
            RECO_SERVICE__RATE_LIMIT_BURST=str(RATE_LIMIT),
        )
        if self.redis_url:
            env.update(
                RECO_REDIS_URL=self.redis_url,
                RECO_EVENTS__BUS="redis",
                RECO_EVENTS__STREAM=self.prefix + "stream",
                RECO_EVENTS__KEY_PREFIX=self.prefix + "online:",
                RECO_EVENTS__GROUP="bench-workers",
                RECO_EVENTS__MAX_STREAM_LENGTH="1000000",
            )
        else:
            env.update(RECO_EVENTS__BUS="memory")
        return env

    def start(self) -> float:
        """Start the service (and the worker with Redis); seconds until ready."""
        started = time.perf_counter()
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        serve += ["--workers", str(self.workers)]
        self.processes.append(Process(serve, self.env(), self.home / "serve.log"))
        if self.redis_url:
            self.processes.append(Process(["worker"], self.env(), self.home / "worker.log"))
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for process in self.processes:
                if not process.alive():
                    raise SystemExit(f"`reco {process.args[0]}` exited:\n{process.tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the service was not ready in {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop every process and remove this run's Redis keys."""
        for process in self.processes:
            process.stop()
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

    def rss_mb(self) -> float:
        """RSS of every process of the scenario, MB."""
        return sum(p.rss_mb() for p in self.processes)

    def headers(self) -> dict[str, str]:
        """Authorization."""
        return {"Authorization": f"Bearer {self.secret}"}

    def status(self, client: httpx.Client) -> dict:
        """GET /v1/events/status."""
        response = client.get(f"{self.url}/v1/events/status", headers=self.headers())
        response.raise_for_status()
        return response.json()

    def caught_up(self, client: httpx.Client, timeout: float = CATCH_UP_TIMEOUT) -> dict:
        """Wait until the online features applied every stored event; the status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(client)
            through, stored = status["processed_through"], status["stored_through"]
            if through is not None and stored is not None and through >= stored:
                return status
            if time.monotonic() > deadline:
                raise SystemExit(f"the event path did not catch up in {timeout:.0f} s: {status}")
            time.sleep(0.02)


# -- 1. freshness -----------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    """Milliseconds from each 202 to the first answer without the item, and to the
    online features holding the event."""

    answer_ms: list[float]
    online_ms: list[float]
    first_poll: int
    timeouts: int


def measure_freshness(scenario: Scenario, users: list[str], samples: int) -> Freshness:
    """POST a view of the user's first item; poll until it leaves their answer."""
    answer_ms, online_ms = [], []
    first_poll = timeouts = 0
    with httpx.Client(headers=scenario.headers(), timeout=10) as client:
        scenario.caught_up(client)
        for k in range(samples):
            user = users[(k * 37) % len(users)]
            path = f"{scenario.url}/v1/users/{user}/recommendations?n=10"
            item = client.get(path).json()["items"][0]["item_id"]
            event = {"user_id": user, "item_id": item, "event_type": "view"}
            response = client.post(f"{scenario.url}/v1/events", json=event)
            acknowledged = time.perf_counter()
            response.raise_for_status()
            polls = 0
            while True:
                polls += 1
                shown = [i["item_id"] for i in client.get(path).json()["items"]]
                if item not in shown:
                    answer_ms.append((time.perf_counter() - acknowledged) * 1000)
                    first_poll += polls == 1
                    break
                if time.perf_counter() - acknowledged > POLL_TIMEOUT:
                    timeouts += 1
                    break
            # A second event, to time the online features alone (no answer polled).
            event = {"user_id": user, "item_id": item, "event_type": "click"}
            response = client.post(f"{scenario.url}/v1/events", json=event)
            acknowledged = time.perf_counter()
            response.raise_for_status()
            stored = scenario.status(client)["stored_through"]  # at least this event's id
            while True:
                status = scenario.status(client)
                if (status["processed_through"] or 0) >= stored:
                    online_ms.append((time.perf_counter() - acknowledged) * 1000)
                    break
                if time.perf_counter() - acknowledged > POLL_TIMEOUT:
                    timeouts += 1
                    break
    return Freshness(answer_ms, online_ms, first_poll, timeouts)


# -- 2. ingestion with wrk ----------------------------------------------------------------

LUA = """\
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(secret)s"
local users = {%(users)s}
local items = {%(items)s}
local batch = %(batch)d
local recommend_every = %(recommend_every)d
local counter = 0
local function event()
  counter = counter + 1
  local t = tid or 1
  return string.format(
    '{"user_id":"%%s","item_id":"%%s","event_type":"view","event_id":"%(run)s-%%d-%%d"}',
    users[(counter + t * 131) %% #users + 1], items[(counter * 7 + t) %% #items + 1],
    t, counter)
end
function request()
  if recommend_every > 0 and counter %% recommend_every == 0 then
    counter = counter + 1
    local user = users[(counter * 13) %% #users + 1]
    return wrk.format("GET", "/v1/users/" .. user .. "/recommendations?n=10", nil, nil)
  end
  if batch == 1 then
    return wrk.format("POST", "/v1/events", nil, event())
  end
  local parts = {}
  for k = 1, batch do parts[k] = event() end
  return wrk.format("POST", "/v1/events", nil, "[" .. table.concat(parts, ",") .. "]")
end
ok = 0
function response(status, headers, body)
  if status < 300 then ok = ok + 1 end
end
function done(summary, latency, requests)
  local good = 0
  for _, t in ipairs(threads) do good = good + (t:get("ok") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"ok":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"status":%%d,"socket":%%d}\\n', summary.requests, good, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: requests, 2xx answers, seconds, latency, errors."""

    requests: int
    ok: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(
    scenario: Scenario,
    prepared: Prepared,
    *,
    batch: int,
    seconds: float,
    connections: int,
    recommend_every: int = 0,
) -> Load:
    """Load POST /v1/events (and GET recommendations when ``recommend_every`` > 0)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    script = LUA % {
        "secret": scenario.secret,
        "users": ",".join(json.dumps(u) for u in prepared.users),
        "items": ",".join(json.dumps(i) for i in prepared.items),
        "batch": batch,
        "recommend_every": recommend_every,
        "run": uuid.uuid4().hex[:8],
    }
    path = scenario.home / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    path.write_text(script)
    command = [wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--timeout", "10s", "-s", str(path), scenario.url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            return Load(
                requests=raw["requests"],
                ok=raw["ok"],
                seconds=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                errors=raw["status"] + raw["socket"],
            )
    raise SystemExit(f"wrk gave no summary:\n{done.stdout}\n{done.stderr}")


@dataclass(frozen=True)
class Ingestion:
    """Sustained ingestion: acknowledged events/s, and what reached store and features."""

    name: str
    load: Load
    acknowledged: int
    stored: int
    applied: int

    @property
    def rate(self) -> float:
        """Acknowledged events per second."""
        return self.acknowledged / self.load.seconds if self.load.seconds else 0.0

    @property
    def lost(self) -> int:
        """Acknowledged events missing from the store or the online counters."""
        return max(0, self.acknowledged - self.stored) + abs(self.stored - self.applied)


def measure_ingestion(
    scenario: Scenario, prepared: Prepared, *, batch: int, seconds: float, connections: int
) -> Ingestion:
    """wrk posting events; then wait for the processors and count."""
    with httpx.Client(headers=scenario.headers(), timeout=30) as client:
        before = scenario.caught_up(client)
        load = run_wrk(scenario, prepared, batch=batch, seconds=seconds, connections=connections)
        after = settled(scenario, client)
    stored = stored_events(scenario.home, before["stored_through"])
    applied = (after["events_applied"] or 0) - (before["events_applied"] or 0)
    name = "single events" if batch == 1 else f"batches of {batch}"
    return Ingestion(name, load, load.ok * batch, stored, applied)


def settled(scenario: Scenario, client: httpx.Client) -> dict:
    """The status once requests still in flight when wrk stopped are stored and applied:
    caught up, with the same stored id half a second apart."""
    while True:
        first = scenario.caught_up(client)
        time.sleep(0.5)
        second = scenario.caught_up(client)
        if second["stored_through"] == first["stored_through"]:
            return second


# -- 3. soak ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Soak:
    """The mixed load's numbers and the memory before and after."""

    load: Load
    rss_start_mb: float
    rss_end_mb: float


def soak(scenario: Scenario, prepared: Prepared, seconds: float) -> Soak:
    """Events and recommendations (one GET per three POSTs) for ``seconds``."""
    start = scenario.rss_mb()
    load = run_wrk(scenario, prepared, batch=1, seconds=seconds, connections=8, recommend_every=4)
    with httpx.Client(headers=scenario.headers(), timeout=30) as client:
        settled(scenario, client)
    return Soak(load, start, scenario.rss_mb())


# -- printing -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def verdict(ok: bool) -> str:
    """met / MISSED."""
    return "met" if ok else "MISSED"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other jobs share the cores)."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def print_setup(args: argparse.Namespace, prepared: Prepared, loads: list[str]) -> None:
    """What ran where, and how busy the machine was."""
    import numpy
    import uvicorn

    print("## Freshness benchmark (issue 5)\n")
    print(
        f"- data: ml-100k, {prepared.n_interactions:,} interactions, "
        f"{len(prepared.users):,} users; model {prepared.version} "
        f"(trained in {prepared.train_seconds:.0f} s: {', '.join(SOURCES)})"
    )
    print(
        f"- machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"uvicorn {uvicorn.__version__}"
    )
    print(
        f"- service: `reco serve --workers {args.workers}` on loopback, SQLite store; "
        f"redis: {args.redis_url if args.redis else 'skipped'} with one `reco worker`"
    )
    print(
        f"- wrk: 2 threads, {args.connections} connections, {args.ingest_seconds:.0f} s per "
        f"ingestion row; freshness over {args.samples} events; client and server share "
        "the cores"
    )
    print(f"- load average (1, 5, 15 min): {'; '.join(loads)}\n")


def print_freshness(rows: list[tuple[str, Freshness, float]]) -> None:
    """Freshness table."""
    print("### Event -> next answer\n")
    print(
        "| bus | events | answer p50 ms | answer p99 ms | fresh on 1st poll | "
        "online p50 ms | online p99 ms | timeouts | target (p99) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, fresh, target in rows:
        p99 = percentile(fresh.answer_ms, 99)
        print(
            f"| {name} | {len(fresh.answer_ms)} | {percentile(fresh.answer_ms, 50):.1f} | "
            f"{p99:.1f} | {fresh.first_poll} | {percentile(fresh.online_ms, 50):.1f} | "
            f"{percentile(fresh.online_ms, 99):.1f} | {fresh.timeouts} | "
            f"< {target:.0f} ms: {verdict(p99 < target and not fresh.timeouts)} |"
        )
    print()


def print_ingestion(rows: list[tuple[str, Ingestion]]) -> None:
    """Ingestion table."""
    print("### Sustained ingestion\n")
    print(
        "| bus | mode | requests/s | events/s | p99 ms | errors | acknowledged | stored | "
        "applied online | lost | target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, row in rows:
        target = SINGLE_EVENTS_PER_S if row.name == "single events" else BATCH_EVENTS_PER_S
        ok = row.rate >= target and row.lost == 0 and row.load.errors == 0
        print(
            f"| {name} | {row.name} | {row.load.ok / row.load.seconds:,.0f} | {row.rate:,.0f} | "
            f"{row.load.p99_ms:.1f} | {row.load.errors} | {row.acknowledged:,} | "
            f"{row.stored:,} | {row.applied:,} | {row.lost} | "
            f">= {target:,.0f}/s, 0 lost: {verdict(ok)} |"
        )
    print()


def print_soak(rows: list[tuple[str, Soak]], seconds: float) -> None:
    """Soak table."""
    print(f"### Soak ({seconds:.0f} s, 3 events : 1 recommendation, 8 connections)\n")
    print("| bus | requests | requests/s | p99 ms | errors | RSS start MB | RSS end MB | growth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows:
        growth = (row.rss_end_mb / row.rss_start_mb - 1) * 100 if row.rss_start_mb else 0
        print(
            f"| {name} | {row.load.requests:,} | {row.load.requests / row.load.seconds:,.0f} | "
            f"{row.load.p99_ms:.1f} | {row.load.errors} | {row.rss_start_mb:.0f} | "
            f"{row.rss_end_mb:.0f} | {growth:+.1f}% |"
        )
    print()


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--home", type=Path, default=None, help="keep the trained home here (reused next time)"
    )
    parser.add_argument("--samples", type=int, default=200, help="freshness events per bus")
    parser.add_argument("--ingest-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="uvicorn workers (default 2: one per core; with 1, one process's GIL caps "
        "ingestion at about one core)",
    )
    parser.add_argument("--soak", type=float, default=600.0, help="soak seconds (0: skip)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", dest="redis", action="store_false")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare once, then measure each bus."""
    args = parse_args(argv)
    data = find_ml100k(args.data_dir)
    base = Path(tempfile.mkdtemp(prefix="reco-bench-freshness-"))
    try:
        prepared = prepare(args.home.resolve() if args.home else base / "home", data)
        buses = [("embedded", None, EMBEDDED_P99_MS)]
        if args.redis:
            buses.append(("redis", args.redis_url, REDIS_P99_MS))
        fresh_rows, ingest_rows, soak_rows = [], [], []
        loads = [f"at the start {load_average()}"]
        for name, redis_url, target in buses:
            with run_home(prepared, name) as home:
                scenario = Scenario(name, home, write_key(home), redis_url, args.workers)
                try:
                    say(f"{name}: starting the service")
                    say(f"{name}: ready in {scenario.start():.1f} s")
                    say(f"{name}: freshness over {args.samples} events")
                    fresh_rows.append(
                        (name, measure_freshness(scenario, prepared.users, args.samples), target)
                    )
                    for batch in (1, BATCH):
                        say(f"{name}: ingestion, batch {batch}")
                        ingest_rows.append(
                            (
                                name,
                                measure_ingestion(
                                    scenario,
                                    prepared,
                                    batch=batch,
                                    seconds=args.ingest_seconds,
                                    connections=args.connections,
                                ),
                            )
                        )
                    if args.soak > 0:
                        say(f"{name}: soak for {args.soak:.0f} s")
                        soak_rows.append((name, soak(scenario, prepared, args.soak)))
                finally:
                    loads.append(f"after {name} {load_average()}")
                    scenario.stop()
        print_setup(args, prepared, loads)
        print_freshness(fresh_rows)
        print_ingestion(ingest_rows)
        if soak_rows:
            print_soak(soak_rows, args.soak)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
