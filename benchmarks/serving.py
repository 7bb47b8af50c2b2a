"""Serving benchmark: the HTTP service under wrk on loopback, and a hot reload under load.

What it does:

* keeps a home folder (default ``var/bench-serving``, reported) holding a SQLite store
  with ml-latest-small ingested and two model versions trained on it (seeds 42 and 43).
  Training happens once: a version is reused while its data fingerprint and config
  hash match the store's data and the settings (``--retrain`` forces it);
* for each server run, copies that home into a fresh run folder (the store through
  SQLite's backup API, model files hard-linked), creates API keys there (read, write,
  admin), and starts ``reco serve`` as a real subprocess on a free loopback port
  (``--workers N``, default 2: one per core here; ``reco serve`` pins BLAS/OpenMP to
  one thread). Events and promotions land in that copy, so every run starts from the
  same state;
* waits for ``/health/ready``, then loads each endpoint with wrk (``--connections``
  16, ``--threads`` 2, ``--duration`` 10 s each after a ``--warmup``; Lua scripts
  written to a temporary folder give the headers, bodies and rotating ids):

  - server A (the default configuration, recommendation cache on): bare
    ``GET /health/live``; warm users cached (8 users repeated: all hits after the
    warm-up); cold users (a new unknown id on every request, with context parameters);
    similar items (rotating over the 500 most consumed items); single events (one
    ``POST /v1/events`` each, write key, rotating over every user);
  - server B (cache disabled with ``RECO_SERVICE__CACHE_ENABLED=false``): bare again,
    and warm users uncached, rotating over all 610 users. Disabling the cache is the
    honest uncached number: every request scores, and no cache-busting parameter
    changes what is scored. Then the same requests paced (``--paced-rates``, default
    100, 150 and 210 req/s offered over the same 16 connections: each wrk thread sends
    one request per slot of its share of the rate, like wrk2). wrk's own rows are closed loops,
    where each connection sends again the moment it is answered: their latency is
    queueing at saturation (16 connections / p99 under 50 ms means more than 320
    answers/s), while the paced row tells the latency at a given load;
  - hot reload under load (``--reload-under-load``, on by default) on server B: while
    wrk hammers uncached warm recommendations, the other trained version is promoted
    with ``POST /v1/models/{version}/promote`` (admin key). It reports the requests that
    failed during the swap (non-2xx answers, socket errors, timeouts) and the
    ``X-Model-Version`` of the answers before, during and after.

Each row shows requests/s, p50, p99, errors and its ratio to the bare endpoint's
requests/s on the same server. The issue's targets are printed next to the numbers
with met / MISSED; nothing is asserted. wrk runs on the same machine as the server
and takes part of the same cores.

    python benchmarks/serving.py                     # everything, 10 s per row
    python benchmarks/serving.py --duration 30 --workers 1
    python benchmarks/serving.py --no-reload-under-load
    RECO_DATA_DIR=/data python benchmarks/serving.py  # where ml-latest-small lives
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import httpx

from processes import free_port, log_tail, reco_command, stop_process

ROOT = Path(__file__).resolve().parents[1]
DATASET = "movielens-latest-small"
SEEDS = (42, 43)  # version A is served first, version B is promoted under load
CACHED_USERS = 8
SIMILAR_ITEMS = 500
COLD_CONTEXTS = (
    "device=mobile&os=android&country=US",
    "device=desktop&os=windows&country=DE",
    "device=tablet&os=ios&country=FR",
    "device=mobile&os=ios&country=GB",
)
# Raised so that the load measures capacity, not the per-key limit (default 100/s).
RATE_LIMIT = 1_000_000
# Answers slower than this count as timeouts and leave wrk's latency histogram.
WRK_TIMEOUT = "10s"
READY_TIMEOUT = 600.0
RELOAD_MAX_SECONDS = 300.0  # the longest a promotion (load, verify, warm up) may take
RELOAD_STREAK = 20  # answers in a row from the new version: every worker serves it
# Issue 4's targets.
UNCACHED_P99_MS = 50.0
UNCACHED_MIN_RPS = 200.0
# The paced rows' offered rates: latency as the load grows, the last a little over
# the target rate, so that meeting it is clear.
PACED_RATES = "100,150,210"
CACHED_MIN_RATIO = 0.5


def say(message: str) -> None:
    """Progress on stderr (tables go to stdout)."""
    print(f"  {message}", file=sys.stderr, flush=True)


# -- data and the cached home ---------------------------------------------------------


def find_data(data_dir: Path | None) -> Path:
    """The unpacked ml-latest-small folder: --data-dir, RECO_DATA_DIR or ../shared/data."""
    from reco.data.fetch import find_local_movielens

    search = [data_dir, os.environ.get("RECO_DATA_DIR"), ROOT.parent / "shared" / "data"]
    dirs = [Path(d) for d in search if d]
    found = find_local_movielens(DATASET, dirs)
    if found is None:
        raise SystemExit(
            f"ml-latest-small was not found in {', '.join(map(str, dirs))}; run "
            f"`reco data fetch {DATASET}` and pass --data-dir (or set RECO_DATA_DIR)"
        )
    return found


@dataclass(frozen=True)
class Prepared:
    """The cached home: its data, and the two versions (A served first, B promoted)."""

    home: Path
    data_folder: Path
    users: list[str]
    popular_items: list[str]
    n_items: int
    n_interactions: int
    versions: tuple[str, str]
    trained: tuple[bool, bool]
    manifests: tuple[dict, dict]


def prepare_home(home: Path, data_folder: Path, *, retrain: bool) -> Prepared:
    """Ingest ml-latest-small into ``home``'s store (idempotent) and make sure a version
    trained on exactly that data exists for each seed, training only what is missing."""
    from reco.config import Settings
    from reco.data.dataset import Dataset
    from reco.data.movielens import load_movielens
    from reco.registry import ModelRegistry
    from reco.store.db import open_store
    from reco.store.repository import ingest, load_frames
    from reco.training.job import config_hash, train

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, database_url=None, redis_url=None)
    engine = open_store(settings.resolved_database_url)
    try:
        say(f"ingesting {data_folder} into {settings.resolved_database_url}")
        report = ingest(engine, load_movielens(data_folder), source=str(data_folder))
        say(
            f"ingest added {report.interactions_added:,} interactions "
            f"({report.duplicates_skipped:,} already there)"
        )
        frames = load_frames(engine)
    finally:
        engine.dispose()
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    fingerprint = data.fingerprint()
    registry = ModelRegistry(settings.models_dir)
    versions, trained, manifests = [], [], []
    for seed in SEEDS:
        seeded = settings.model_copy(update={"seed": seed})
        wanted = config_hash(seeded)
        matches = [
            entry
            for entry in registry.versions()
            if entry.manifest.get("data_fingerprint") == fingerprint
            and entry.manifest.get("config_hash") == wanted
        ]
        if matches and not retrain:
            entry = matches[-1]
            say(f"reusing version {entry.version} (seed {seed}, same data fingerprint)")
            versions.append(entry.version)
            trained.append(False)
        else:
            say(f"training on {data.n_interactions:,} interactions (seed {seed}; minutes)")
            result = train(frames, seeded, progress=say)
            entry = registry.get(result.version)
            versions.append(result.version)
            trained.append(True)
        manifests.append(entry.manifest)
    counts = frames.interactions["item_id"].value_counts()
    return Prepared(
        home=home,
        data_folder=data_folder,
        users=sorted(map(str, frames.interactions["user_id"].unique()), key=_natural),
        popular_items=[str(i) for i in counts.index[:SIMILAR_ITEMS]],
        n_items=data.n_items,
        n_interactions=data.n_interactions,
        versions=(versions[0], versions[1]),
        trained=(trained[0], trained[1]),
        manifests=(manifests[0], manifests[1]),
    )


def _natural(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (1 << 62, value)


@contextmanager
def run_home(prepared: Prepared, label: str) -> Iterator[Path]:
    """A fresh copy of the cached home for one server run, serving version A; removed
    afterwards. The store is copied with SQLite's backup API, model files hard-linked
    (they are never written after publishing)."""
    from reco.registry import ModelRegistry

    runs = prepared.home / "runs"
    runs.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=runs))
    try:
        source = sqlite3.connect(prepared.home / "reco.db")
        target = sqlite3.connect(folder / "reco.db")
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        models = folder / "models"
        models.mkdir()
        for version in prepared.versions:
            shutil.copytree(
                prepared.home / "models" / version, models / version, copy_function=_link_or_copy
            )
        ModelRegistry(models).promote(prepared.versions[0])
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def create_keys(home: Path) -> dict[str, str]:
    """A read, a write and an admin key in ``home``'s store; secrets by role."""
    from reco.service.keys import Role, create_key
    from reco.store.db import open_store

    engine = open_store(f"sqlite:///{home / 'reco.db'}")
    try:
        return {role.value: create_key(engine, f"bench-{role.value}", role)[1] for role in Role}
    finally:
        engine.dispose()


# -- the server -----------------------------------------------------------------------


@dataclass
class Server:
    """`reco serve` as a subprocess on a free loopback port, its output in a log file."""

    home: Path
    workers: int
    cache: bool
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the server's JSON logs go."""
        return self.home / "server.log"

    def environment(self) -> dict[str, str]:
        """The parent's environment without RECO_ settings, plus the benchmark's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_")}
        env.update(
            RECO_HOME=str(self.home),
            RECO_SERVICE__CACHE_ENABLED="true" if self.cache else "false",
            RECO_SERVICE__RATE_LIMIT_PER_SECOND=str(RATE_LIMIT),
            RECO_SERVICE__RATE_LIMIT_BURST=str(RATE_LIMIT),
        )
        return env

    def start(self) -> float:
        """Start and wait until ready; returns the seconds it took."""
        started = time.perf_counter()
        command = [
            *reco_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"`reco serve` exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the service was not ready in {READY_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL to its group if stuck."""
        stop_process(self.process)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- wrk ------------------------------------------------------------------------------

LUA_PRELUDE = """\
-- Written by benchmarks/serving.py for one wrk run.
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
"""

LUA_DONE = """\
local function object(tbl)
  local parts = {}
  for k, v in pairs(tbl) do parts[#parts + 1] = string.format('"%s":%d', tostring(k), v) end
  return "{" .. table.concat(parts, ",") .. "}"
end
function done(summary, latency, requests)
  local statuses, versions = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do statuses[k] = (statuses[k] or 0) + v end
    for k, v in pairs(t:get("versions") or {}) do versions[k] = (versions[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"statuses":%s,"versions":%s}\\n',
    summary.requests, summary.duration, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(99)), math.floor(latency.max), e.connect, e.read, e.write,
    e.status, e.timeout, object(statuses), object(versions)))
end
"""

LUA_ROTATE = """\
local paths = {%(paths)s}
local prepared = {}
local i = 0
function init(args)
  for k, p in ipairs(paths) do prepared[k] = wrk.format(nil, p) end
  i = ((tid or 1) - 1) * 7919 %% #prepared
end
function request()
  i = i %% #prepared + 1
  return prepared[i]
end
"""

# Paces a wrk thread to a constant offered rate (wrk2's constant-throughput idea):
# each request takes the thread's next send slot, one every %(period_ms)s ms (the thread's
# share of the rate), and waits for it; a slot missed because every connection was busy
# is sent at once. LuaJIT's FFI reads the monotonic clock (wrk's Lua has none).
LUA_PACED = """\
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } reco_timespec;
int clock_gettime(int clock_id, reco_timespec *now);
]]
local clock = ffi.new("reco_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local period = %(period_ms)s
local next_slot = nil
function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now - 10 * period then
    next_slot = now + math.random() * period
  end
  local slot = next_slot
  next_slot = next_slot + period
  if slot <= now then return 0 end
  return math.floor(slot - now + 0.5)
end
"""

LUA_COLD = """\
local contexts = {%(contexts)s}
local counter = 0
function request()
  counter = counter + 1
  local path = "/v1/users/bench-cold-%(run)s-" .. (tid or 1) .. "-" .. counter ..
    "/recommendations?n=10&" .. contexts[counter %% #contexts + 1]
  return wrk.format(nil, path)
end
"""

LUA_EVENTS = """\
local users = {%(users)s}
local items = {%(items)s}
local counter = 0
function request()
  counter = counter + 1
  local t = tid or 1
  local body = string.format(
    '{"user_id":"%%s","item_id":"%%s","timestamp":%%d,"event_id":"bench-%(run)s-%%d-%%d"}',
    users[(counter + t * 131) %% #users + 1], items[(counter * 7 + t) %% #items + 1],
    os.time(), t, counter)
  return wrk.format("POST", "/v1/events", nil, body)
end
"""

LUA_COUNT_RESPONSES = """\
statuses = {}
versions = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local v = headers["x-model-version"] or headers["X-Model-Version"]
  if v then versions[v] = (versions[v] or 0) + 1 end
end
"""


def _lua_strings(values: list[str]) -> str:
    return ",".join(json.dumps(v) for v in values)


def lua_script(body: str, *, headers: dict[str, str] | None = None, path: str | None = None) -> str:
    """A whole wrk script: the thread numbering, ``body`` and the JSON summary."""
    lines = [LUA_PRELUDE]
    if path is not None:
        lines.append(f"wrk.path = {json.dumps(path)}")
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    lines += [body, LUA_DONE]
    return "\n".join(lines)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run's numbers."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int  # HTTP status > 399
    socket_errors: int  # connect + read + write + timeout
    timeouts: int
    statuses: dict[str, int]
    versions: dict[str, int]

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Error answers and socket errors."""
        return self.status_errors + self.socket_errors


@dataclass
class Wrk:
    """Runs wrk with generated Lua scripts (kept in a temporary folder)."""

    executable: str
    connections: int
    threads: int
    folder: Path
    runs: int = 0

    def run(self, url: str, script: str, seconds: float) -> WrkResult:
        """Load ``url`` for ``seconds`` with ``script``."""
        return self.finish(self.start(url, script, seconds), wait=seconds + 120)

    def start(self, url: str, script: str, seconds: float) -> subprocess.Popen:
        """Start loading ``url`` for at most ``seconds``; :meth:`finish` collects it."""
        self.runs += 1
        path = self.folder / f"run{self.runs:02d}.lua"
        path.write_text(script)
        command = [
            self.executable,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            WRK_TIMEOUT,
            "-s",
            str(path),
            url,
        ]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(
        self, process: subprocess.Popen, *, wait: float = 120, stop: bool = False
    ) -> WrkResult:
        """The numbers of a started run; ``stop``: end it now (SIGINT: wrk stops the
        load and still prints its summary)."""
        if stop and process.poll() is None:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=wait)
        for line in stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return _wrk_result(json.loads(line.removeprefix("BENCH_JSON ")))
        raise SystemExit(f"wrk gave no summary (exit {process.returncode}):\n{stdout}\n{stderr}")


def _wrk_result(raw: dict) -> WrkResult:
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        status_errors=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        timeouts=raw["timeout"],
        statuses={str(k): v for k, v in raw["statuses"].items()},
        versions=dict(raw["versions"]),
    )


def find_wrk() -> str:
    """The wrk executable (Debian package `wrk`; `make bench-serving` installs it)."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (or `make bench-serving`)")
    return found


# -- scenarios ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One measured scenario and the bare endpoint it is compared with."""

    name: str
    server: str
    result: WrkResult
    bare_rps: float
    load: float
    offered_rps: float | None = None  # paced rows: the rate wrk offered

    @property
    def ratio(self) -> float:
        """Requests/s relative to the bare endpoint on the same server."""
        return self.result.rps / self.bare_rps if self.bare_rps else float("nan")


@dataclass
class Bench:
    """Shared pieces of every scenario: wrk, durations, ids, the run id."""

    wrk: Wrk
    duration: float
    warmup: float
    prepared: Prepared
    run_id: str = field(default_factory=lambda: time.strftime("%H%M%S"))

    def measure(self, name: str, server: str, url: str, script: str, bare_rps: float) -> Row:
        """Warm up, then measure one scenario."""
        if self.warmup > 0:
            self.wrk.run(url, script, self.warmup)
        load = os.getloadavg()[0]
        say(f"{server}: {name} ({self.duration:g} s)")
        result = self.wrk.run(url, script, self.duration)
        return Row(name, server, result, bare_rps or result.rps, load)

    def bare(self, server: Server, label: str) -> Row:
        """GET /health/live: no key, no model, no store."""
        script = lua_script("", path="/health/live")
        return self.measure("bare GET /health/live", label, server.url, script, 0.0)

    def warm_paths(self, users: list[str]) -> str:
        """Lua list of recommendation paths for ``users``."""
        return _lua_strings([f"/v1/users/{u}/recommendations?n=10" for u in users])

    def warm(self, server: Server, label: str, name: str, users: list[str], key: str, bare: float):
        """Warm users' recommendations rotating over ``users``."""
        script = lua_script(LUA_ROTATE % {"paths": self.warm_paths(users)}, headers=_auth(key))
        return self.measure(name, label, server.url, script, bare)

    def paced(
        self, server: Server, label: str, users: list[str], key: str, rate: float, bare: float
    ) -> Row:
        """Warm users' recommendations offered at ``rate`` requests/s in all (each wrk
        thread sends at its share of it over the same connections), not as fast as
        the answers come back: latency at a given load, not at saturation."""
        period_ms = 1000.0 * self.wrk.threads / rate
        body = LUA_ROTATE % {"paths": self.warm_paths(users)}
        body += LUA_PACED % {"period_ms": f"{period_ms:.4f}"}
        script = lua_script(body, headers=_auth(key))
        name = f"warm users uncached, offered {rate:g} req/s"
        return replace(self.measure(name, label, server.url, script, bare), offered_rps=rate)

    def cold(self, server: Server, label: str, key: str, bare: float) -> Row:
        """A new unknown user on every request, with context parameters."""
        body = LUA_COLD % {"contexts": _lua_strings(list(COLD_CONTEXTS)), "run": self.run_id}
        script = lua_script(body, headers=_auth(key))
        name = "cold users (new id each, context params)"
        return self.measure(name, label, server.url, script, bare)

    def similar(self, server: Server, label: str, key: str, bare: float) -> Row:
        """Similar items, rotating over the most consumed items."""
        paths = [f"/v1/items/{i}/similar?n=10" for i in self.prepared.popular_items]
        script = lua_script(LUA_ROTATE % {"paths": _lua_strings(paths)}, headers=_auth(key))
        name = f"similar items ({len(paths)} items rotating)"
        return self.measure(name, label, server.url, script, bare)

    def events(self, server: Server, label: str, key: str, bare: float) -> Row:
        """One event per POST, with a unique event id, rotating over every user."""
        body = LUA_EVENTS % {
            "users": _lua_strings(self.prepared.users),
            "items": _lua_strings(self.prepared.popular_items),
            "run": self.run_id,
        }
        headers = {**_auth(key), "Content-Type": "application/json"}
        script = lua_script(body, headers=headers)
        return self.measure("single events POST /v1/events", label, server.url, script, bare)


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class ReloadResult:
    """What happened while a version was promoted under load."""

    result: WrkResult
    old: str
    new: str
    promote_status: int
    promote_seconds: float
    promote_at: float
    all_new_seconds: float  # after the promote call returned, until every worker served it
    after: list[str]

    @property
    def failed(self) -> int:
        """Requests that failed during the run: any non-2xx, socket errors, timeouts."""
        not_ok = sum(v for k, v in self.result.statuses.items() if not k.startswith("2"))
        return not_ok + self.result.socket_errors

    @property
    def switched(self) -> bool:
        """Answers under load moved to the new version, and every answer after the run
        came from it."""
        under_load = self.result.versions.get(self.new, 0) > 0
        return under_load and bool(self.after) and all(v == self.new for v in self.after)


def reload_under_load(
    bench: Bench, server: Server, keys: dict[str, str], before: float, after: float
) -> ReloadResult:
    """Promote version B through the API while wrk loads warm recommendations: ``before``
    seconds of load, the promote call (it returns once its worker serves B), then until
    every worker answers from B and ``after`` seconds more; wrk is then stopped and its
    answers counted."""
    old, new = bench.prepared.versions
    body = LUA_ROTATE % {"paths": bench.warm_paths(bench.prepared.users)} + LUA_COUNT_RESPONSES
    script = lua_script(body, headers=_auth(keys["read"]))
    say(f"hot reload: promoting {new} after {before:g} s of load, then {after:g} s more")
    load = bench.wrk.start(server.url, script, before + RELOAD_MAX_SECONDS + after)
    time.sleep(before)
    started = time.perf_counter()
    try:
        response = httpx.post(
            f"{server.url}/v1/models/{new}/promote",
            headers=_auth(keys["admin"]),
            timeout=RELOAD_MAX_SECONDS,
        )
        status, detail = response.status_code, response.text[:500]
    except httpx.HTTPError as exc:
        status, detail = 0, f"{type(exc).__name__}: {exc}"
    promote_seconds = time.perf_counter() - started
    if status != 200:
        say(f"promote answered {status}: {detail}")
    # Other workers notice the new `current` within reload_check_seconds, then load
    # the version themselves: wait (still under load) until answers come from it.
    all_new = _wait_for_version(server, keys["read"], bench.prepared.users, new)
    time.sleep(after)
    result = bench.wrk.finish(load, stop=True)
    answered = [_answer_version(server, keys["read"], user) for user in bench.prepared.users[:20]]
    return ReloadResult(
        result=result,
        old=old,
        new=new,
        promote_status=status,
        promote_seconds=promote_seconds,
        promote_at=before,
        all_new_seconds=all_new,
        after=answered,
    )


def _answer_version(server: Server, secret: str, user: str) -> str:
    """The X-Model-Version of one answer (a new connection: any worker may take it)."""
    response = httpx.get(
        f"{server.url}/v1/users/{user}/recommendations?n=10", headers=_auth(secret), timeout=60
    )
    return response.headers.get("X-Model-Version", f"status {response.status_code}")


def _wait_for_version(server: Server, secret: str, users: list[str], version: str) -> float:
    """Seconds until the first of ``RELOAD_STREAK`` answers in a row from ``version`` was
    asked for (nan if that never happened within ``RELOAD_MAX_SECONDS``)."""
    started = time.perf_counter()
    streak, streak_started = 0, started
    while time.perf_counter() - started < RELOAD_MAX_SECONDS:
        asked = time.perf_counter()
        user = users[int(asked * 1000) % len(users)]
        if _answer_version(server, secret, user) == version:
            streak, streak_started = streak + 1, streak_started if streak else asked
        else:
            streak = 0
        if streak >= RELOAD_STREAK:
            return streak_started - started
        time.sleep(0.2)
    return float("nan")


# -- report ---------------------------------------------------------------------------


def versions_line(wrk: str) -> str:
    """Versions of what is measured."""
    names = ("reco", "fastapi", "starlette", "uvicorn", "numpy", "scipy", "lightgbm")
    found = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    probe = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    first = (probe.stdout or probe.stderr).splitlines()
    found.append(first[0].split(" Copyright")[0] if first else "wrk")
    return ", ".join(found)


def code_line() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head[:90] + (" + uncommitted changes" if dirty else "")


def cpu_line() -> str:
    """Cores and CPU model."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable cores of {os.cpu_count()}" + (f" ({model})" if model else "")


def print_setup(args: argparse.Namespace, prepared: Prepared, wrk: str) -> None:
    """Where the numbers come from."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("serving benchmark (benchmarks/serving.py)")
    print(f"  machine:     {cpu_line()}; load average {load} at start")
    print(f"  versions:    {versions_line(wrk)}")
    print(f"  code:        {code_line()}")
    print(
        f"  data:        ml-latest-small from {prepared.data_folder}: {len(prepared.users):,} "
        f"users, {prepared.n_items:,} items, {prepared.n_interactions:,} interactions"
    )
    print(f"  home:        {prepared.home} (SQLite store and trained versions, reused)")
    for label, version, trained, manifest in zip(
        ("A (served)", "B (promoted)"),
        prepared.versions,
        prepared.trained,
        prepared.manifests,
        strict=True,
    ):
        seed = manifest.get("config", {}).get("seed")
        how = "trained now" if trained else "reused"
        print(
            f"  model {label:13s} {version}: selected {manifest.get('selected_model')}, "
            f"seed {seed}, {how}"
        )
    print(
        f"  service:     `reco serve` subprocess on 127.0.0.1, {args.workers} worker(s), "
        "BLAS/OpenMP 1 thread, SQLite store, in-process cache and rate limiter; rate limit "
        f"raised to {RATE_LIMIT:,}/s per key (the default 100/s would answer 429s); JSON "
        "access log to a file"
    )
    print(
        f"  load:        wrk {args.threads} threads, {args.connections} connections, "
        f"{args.duration:g} s per row after {args.warmup:g} s warm-up, timeout {WRK_TIMEOUT}, "
        "on the same machine (wrk shares the cores with the server)"
    )
    print(
        "  errors:      HTTP status >= 400 plus socket errors (connect, read, write, "
        "timeout); the reload row counts every non-2xx"
    )
    print()


def print_rows(rows: list[Row]) -> None:
    """The main table."""
    head = (
        f"{'scenario':46s}{'server':>8s}{'req/s':>10s}{'x bare':>8s}{'p50 ms':>9s}"
        f"{'p99 ms':>9s}{'max ms':>9s}{'errors':>8s}{'requests':>10s}{'load':>6s}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        r = row.result
        print(
            f"{row.name:46s}{row.server:>8s}{r.rps:10,.1f}{row.ratio:8.2f}{r.p50_ms:9.1f}"
            f"{r.p99_ms:9.1f}{r.max_ms:9.1f}{r.errors:8d}{r.requests:10,d}{row.load:6.2f}"
        )
    print(
        "servers: A = default configuration (recommendation cache on); B = cache disabled "
        "(RECO_SERVICE__CACHE_ENABLED=false). x bare = req/s / bare req/s on the same server; "
        "load = 1-min load average before the row."
    )
    print()


def print_reload(reload: ReloadResult) -> None:
    """The hot reload section."""
    r = reload.result
    print(
        f"hot reload under load (server B, warm users uncached, {r.seconds:.0f} s of load: "
        f"promote after {reload.promote_at:g} s, wrk stopped a few seconds after every "
        "worker served the new version)"
    )
    print(
        f"  promote {reload.old} -> {reload.new}: HTTP {reload.promote_status} in "
        f"{reload.promote_seconds:.2f} s (POST /v1/models/{{version}}/promote, admin key)"
    )
    print(
        f"  {r.requests:,} requests, {r.rps:,.1f} req/s, p50 {r.p50_ms:.1f} ms, p99 "
        f"{r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms"
    )
    print(
        f"  statuses: {dict(sorted(r.statuses.items()))}; socket errors {r.socket_errors} "
        f"(timeouts {r.timeouts})"
    )
    seen = ", ".join(f"{v}: {n:,}" for v, n in sorted(r.versions.items()))
    print(f"  X-Model-Version of the answers during the run: {seen}")
    print(
        f"  every answer came from the new version {reload.all_new_seconds:.1f} s after the "
        f"promote call returned (the first of {RELOAD_STREAK} in a row on new connections; "
        "other workers load it themselves)"
    )
    print(f"  failed requests during the swap: {reload.failed}")
    after = sorted(set(reload.after))
    print(f"  {len(reload.after)} requests after the run answered from: {', '.join(after)}")
    print()


def print_targets(rows: list[Row], reload: ReloadResult | None) -> None:
    """The issue's targets next to the measured numbers; never asserted."""
    uncached = next(r for r in rows if r.name.startswith("warm users uncached (all"))
    # The first paced row offered at least the target rate.
    paced = next((r for r in rows if (r.offered_rps or 0) >= UNCACHED_MIN_RPS), None)
    cached = next(r for r in rows if r.name.startswith("warm users cached"))
    errors = sum(r.result.errors for r in rows)
    checks = [
        ("uncached warm throughput (saturated)", f"{uncached.result.rps:,.1f} req/s",
         f">= {UNCACHED_MIN_RPS:g} req/s", uncached.result.rps >= UNCACHED_MIN_RPS),
        ("uncached warm p99 (saturated)", f"{uncached.result.p99_ms:.1f} ms",
         f"< {UNCACHED_P99_MS:g} ms", uncached.result.p99_ms < UNCACHED_P99_MS),
    ]  # fmt: skip
    if paced is not None:
        checks += [
            ("uncached warm served (paced)", f"{paced.result.rps:,.1f} req/s",
             f">= {UNCACHED_MIN_RPS:g} req/s", paced.result.rps >= UNCACHED_MIN_RPS),
            ("uncached warm p99 (paced)", f"{paced.result.p99_ms:.1f} ms",
             f"< {UNCACHED_P99_MS:g} ms", paced.result.p99_ms < UNCACHED_P99_MS),
        ]  # fmt: skip
    checks += [
        ("cached / bare (server A)", f"{cached.ratio:.2f}", f">= {CACHED_MIN_RATIO:g}",
         cached.ratio >= CACHED_MIN_RATIO),
        ("errors, every row", f"{errors:,}", "0", errors == 0),
    ]  # fmt: skip
    if reload is not None:
        checks += [
            ("failed requests during hot reload", f"{reload.failed:,}", "0", reload.failed == 0),
            ("answers switched to the new version", "yes" if reload.switched else "no", "yes",
             reload.switched),
        ]  # fmt: skip
    print("targets (issue 4; 16 connections, 2 cores)")
    head = f"  {'what':38s}{'measured':>18s}{'target':>16s}  result"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for what, measured, target, met in checks:
        print(f"  {what:38s}{measured:>18s}{target:>16s}  {'met' if met else 'MISSED'}")


# -- main -----------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    """Comma-separated positive request rates."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if any(not rate > 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=ROOT / "var" / "bench-serving",
        help="Folder of the store and trained versions (kept, reused).",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Folder holding ml-latest-small (default: RECO_DATA_DIR, ../shared/data).",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn workers (default: one per core here)."
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--paced-rates",
        type=_rates,
        default=_rates(PACED_RATES),
        help="Offered requests/s of the paced uncached rows, comma-separated ('': none).",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per row.")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="Seconds of unmeasured load before each row."
    )
    parser.add_argument(
        "--reload-under-load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Promote a version while wrk runs (default on).",
    )
    parser.add_argument(
        "--reload-before",
        type=float,
        default=5.0,
        help="Seconds of load before the promotion (hot reload section).",
    )
    parser.add_argument(
        "--reload-after",
        type=float,
        default=5.0,
        help="Seconds of load after the promotion returned.",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="Train new versions even if matching ones exist."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare the home, measure each scenario on servers A and B, print the tables."""
    args = parse_args(argv)
    wrk_path = find_wrk()
    started = time.perf_counter()
    prepared = prepare_home(args.home.resolve(), find_data(args.data_dir), retrain=args.retrain)
    print_setup(args, prepared, wrk_path)
    rows: list[Row] = []
    reload = None
    with tempfile.TemporaryDirectory(prefix="reco-wrk-") as scripts:
        wrk = Wrk(wrk_path, args.connections, args.threads, Path(scripts))
        bench = Bench(wrk, args.duration, args.warmup, prepared)
        with run_home(prepared, "a") as home, Server(home, args.workers, cache=True) as server:
            keys = create_keys(home)
            say(f"server A (cache on) ready in {server.start():.1f} s on {server.url}")
            bare = bench.bare(server, "A")
            rows.append(bare)
            rps = bare.result.rps
            cached_users = prepared.users[:CACHED_USERS]
            name = f"warm users cached ({CACHED_USERS} users repeated)"
            rows.append(bench.warm(server, "A", name, cached_users, keys["read"], rps))
            rows.append(bench.cold(server, "A", keys["read"], rps))
            rows.append(bench.similar(server, "A", keys["read"], rps))
            rows.append(bench.events(server, "A", keys["write"], rps))
        with run_home(prepared, "b") as home, Server(home, args.workers, cache=False) as server:
            keys = create_keys(home)
            say(f"server B (cache off) ready in {server.start():.1f} s on {server.url}")
            bare = bench.bare(server, "B")
            rows.append(bare)
            name = f"warm users uncached (all {len(prepared.users)} rotating)"
            rows.append(
                bench.warm(server, "B", name, prepared.users, keys["read"], bare.result.rps)
            )
            for rate in args.paced_rates:
                paced = bench.paced(
                    server, "B", prepared.users, keys["read"], rate, bare.result.rps
                )
                rows.append(paced)
            if args.reload_under_load:
                reload = reload_under_load(
                    bench, server, keys, args.reload_before, args.reload_after
                )
    print_rows(rows)
    if reload is not None:
        print_reload(reload)
    print_targets(rows, reload)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
