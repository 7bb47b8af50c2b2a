"""`reco demo`: the main job end to end on the embedded default (SQLite under RECO_HOME).

It ends by starting the service exactly as `reco serve` does (a `reco serve`
subprocess on loopback), with a freshly created read key: it waits until the service
is ready, asks it for one user's recommendations, and prints a curl line that works
and the answer. With a terminal on stdin it keeps serving until Ctrl-C; otherwise
(CI, pipes) it stops the service and says how to start it again.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from reco.cli.common import console, open_settings_store, record_version
from reco.cli.progress import progress_bar, steps
from reco.data.schema import Frames

# Small enough to train in seconds, big enough to show CF beating popularity.
SYNTHETIC_SHAPE = {"n_users": 3_000, "n_items": 1_500, "n_interactions": 150_000}
LOOPBACK = "127.0.0.1"
READY_SECONDS = 180.0  # the service imports its libraries and loads the model first
STOP_SECONDS = 15.0


def _find_data(dataset: str, data_dir: Path | None, cache_dir: Path) -> tuple[Frames, str]:
    from reco.data.fetch import find_local_movielens
    from reco.data.movielens import load_movielens
    from reco.data.synthetic import generate

    search = [p for p in (data_dir, Path.cwd().parent / "shared" / "data", cache_dir) if p]
    folder = find_local_movielens(dataset, search)
    if folder is not None:
        return load_movielens(folder), f"{dataset} from {folder}"
    console.print(
        f"[yellow]{dataset} was not found in {', '.join(map(str, search))}; "
        "using the synthetic generator instead[/] (run `reco data fetch "
        f"{dataset}` where the internet is reachable to use the real data)"
    )
    return generate(**SYNTHETIC_SHAPE, seed=42), "synthetic data"


def run_demo(dataset: str) -> None:
    """Get data, ingest, evaluate, train, write batch recommendations, say what is next."""
    from reco.pipeline.batch import recommend_batch, write_table
    from reco.store.repository import counts, ingest, load_frames
    from reco.training.evaluation import evaluate_frames
    from reco.training.job import load_current, train

    settings, engine = open_settings_store()
    console.rule("[bold]reco demo")
    console.print(f"home: {settings.home.resolve()}  store: {settings.resolved_database_url}")
    with steps(console) as step:
        step(f"looking for {dataset}")
        frames, description = _find_data(dataset, settings.data_dir, settings.cache_dir)
        step(f"ingesting {description} into the store")
        report = ingest(engine, frames, source=description)
        step("reading the store")
        stored = load_frames(engine)
        totals = counts(engine)
    console.print(
        f"ingest added {report.interactions_added:,} interactions "
        f"({report.duplicates_skipped:,} already there); store: {totals['users']:,} users, "
        f"{totals['items']:,} items, {totals['interactions']:,} interactions"
    )

    console.rule(
        "[bold]evaluation (per-user temporal holdout, last 20% of each user): "
        "the pipeline and each source alone"
    )
    with steps(console) as step:
        evaluation = evaluate_frames(stored, settings, description, step)
        _json_path, md_path = evaluation.write(settings.home / "reports")
    console.print(evaluation.to_rich_table())
    console.print(f"report: {md_path}")

    console.rule("[bold]training on everything in the store")
    with steps(console) as step:
        result = train(stored, settings, progress=step)
        record_version(engine, settings, result.version)
    what = "the full pipeline" if result.selected == "pipeline" else f"{result.selected} alone"
    console.print(
        f"serving [bold]{what}[/] (best on validation); version {result.version} is current"
    )

    console.rule("[bold]batch recommendations")
    _, bundle = load_current(settings)
    user_ids = [str(u) for u in bundle.users.ids]
    with progress_bar(console, f"top-20 for {len(user_ids):,} users") as update:
        recs = recommend_batch(bundle, user_ids, stored.interactions, 20, progress=update)
    output = settings.home / "recommendations.csv"
    write_table(recs, output)
    _show_example(recs, stored)
    console.print(f"wrote {len(recs):,} rows to {output}")

    console.rule("[bold]next")
    console.print(
        "  reco recommend --users all --n 20 --output recs.parquet   # batch top-N again\n"
        "  reco similar 50 --n 10                                      # items like item 50\n"
        "  reco evaluate                                               # the protocol table\n"
        "  reco train --interactions your.csv                          # your own data\n"
        "  reco models list                                            # versions and metrics\n"
        "  reco serve                                                  # the HTTP service"
    )

    console.rule("[bold]the service")
    serve_demo(settings, engine, str(first_user(recs)), interactive=sys.stdin.isatty())


def first_user(recs) -> str:
    """The user the demo shows (the first one with recommendations)."""
    return recs["user_id"].iloc[0]


def _show_example(recs, frames: Frames) -> None:
    user = first_user(recs)
    mine = recs[recs["user_id"] == user].head(5)
    titles = {}
    if frames.items is not None and "title" in frames.items:
        titles = dict(zip(frames.items["item_id"], frames.items["title"], strict=False))
    console.print(f"user {user}'s top 5:")
    for row in mine.itertuples():
        title = titles.get(row.item_id, row.item_id)
        console.print(f"  {row.rank}. {title}  [dim]{row.source}: {row.explanation}[/]")


# -- the service ----------------------------------------------------------------------


@dataclass(frozen=True)
class DemoService:
    """A running `reco serve` subprocess and where it answers."""

    process: subprocess.Popen
    url: str
    log_path: Path


def serve_demo(
    settings,
    engine,
    user_id: str,
    *,
    interactive: bool,
    while_serving: Callable[[str], None] | None = None,
) -> None:
    """Start the service with a new read key, ask it once, print a working curl line.

    ``interactive``: keep serving until Ctrl-C (else stop at once and say how to start
    again). ``while_serving`` is called with the printed curl line while the service
    is up (tests run it).
    """
    import httpx

    from reco.service.keys import Role, create_key

    record, secret = create_key(engine, "demo", Role.READ)
    port = pick_port(settings.service.port)
    with demo_service(settings, port) as service:
        path = f"/v1/users/{quote(user_id, safe='')}/recommendations?n=5"
        line = curl_line(service.url + path, secret)
        answer = httpx.get(
            service.url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=60
        )
        console.print(
            f"serving on {service.url} (docs at {service.url}/docs, logs in "
            f"{service.log_path}); a new read key {record.key_id} asks for user "
            f"{user_id}'s top 5:"
        )
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        console.print(
            f"answer (HTTP {answer.status_code}, model {answer.headers.get('X-Model-Version')}):"
        )
        console.print(_pretty(answer), markup=False, highlight=False, soft_wrap=True)
        if answer.status_code != 200:
            from reco.errors import RecoError

            raise RecoError(
                f"the service answered {answer.status_code} to the demo's request; its "
                f"log is {service.log_path}"
            )
        if while_serving is not None:
            while_serving(line)
        if interactive:
            console.print("[bold]serving until Ctrl-C[/] (the curl line above works meanwhile)")
            _wait_for_interrupt(service.process)
    again = "reco serve" if port == 8000 else f"reco serve --port {port}"
    console.print(
        f"the service is stopped; start it again with `{again}` (RECO_HOME="
        f"{Path(settings.home).resolve()}): the curl line above then works again. Revoke "
        f"the demo key with `reco keys revoke {record.key_id}`."
    )


def curl_line(url: str, secret: str) -> str:
    """A shell command asking ``url`` with the key ``secret``."""
    return f"curl -s -H {shlex.quote('Authorization: Bearer ' + secret)} {shlex.quote(url)}"


def pick_port(preferred: int) -> int:
    """``preferred`` when it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")


def serve_command(port: int) -> list[str]:
    """`reco serve` on loopback at ``port``, run by this interpreter."""
    script = Path(sys.executable).with_name("reco")
    head = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from reco.cli.main import main; main()"]
    )
    return [*head, "serve", "--host", LOOPBACK, "--port", str(port)]


@contextmanager
def demo_service(settings, port: int) -> Iterator[DemoService]:
    """`reco serve` on loopback for the demo's settings, ready; stopped at exit."""
    import httpx

    from reco.errors import RecoError

    url = f"http://{LOOPBACK}:{port}"
    log_path = settings.home / "demo-serve.log"
    env = {**os.environ, "RECO_HOME": str(Path(settings.home).resolve())}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            serve_command(port), env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                raise RecoError(
                    f"`reco serve` exited with code {process.returncode} before it was ready; "
                    f"its log is {log_path}:\n{_tail(log_path)}"
                )
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RecoError(
                    f"the service was not ready after {READY_SECONDS:.0f} s; its log is "
                    f"{log_path}:\n{_tail(log_path)}"
                )
            time.sleep(0.1)
        yield DemoService(process, url, log_path)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (uvicorn finishes requests in flight and exits), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_interrupt(process: subprocess.Popen) -> None:
    """Until Ctrl-C (which the terminal also sends the service) or the service exits."""
    try:
        process.wait()
    except KeyboardInterrupt:
        console.print("stopping the service")


def _pretty(answer) -> str:
    try:
        return json.dumps(answer.json(), indent=2, ensure_ascii=False)
    except ValueError:
        return answer.text


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
