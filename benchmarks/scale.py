"""Scale benchmark: ingest and training time and peak memory on synthetic data.

For each size it generates synthetic interactions once (written as Parquet), then runs
every step in a fresh process so that each step's peak memory is its own:
ingest into a new SQLite store, and fitting each model (item-kNN, ALS, EASE,
popularity). It also fits implicit's own ALS on the very same matrix with the same
parameters, so reco's ALS overhead is a ratio measured in one run.

    python benchmarks/scale.py                  # 1M and 10M interactions
    python benchmarks/scale.py --sizes 1M       # one size

Prints tables; asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

# name -> (users, items) for a number of interactions; about 20 interactions a user.
SHAPES = {
    "1M": (1_000_000, 50_000, 10_000),
    "10M": (10_000_000, 500_000, 50_000),
}
MODELS = ["popularity", "itemknn", "als", "ease"]
ALS_PARAMS = {"factors": 64, "iterations": 15, "regularization": 0.01}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_dataset(folder: Path):
    import pandas as pd

    from reco.data.dataset import Dataset

    return Dataset.from_frames(pd.read_parquet(folder / "interactions.parquet"))


def step_generate(folder: Path, n: int, users: int, items: int) -> dict:
    """Generate the synthetic frames and write them as Parquet."""
    from reco.data.synthetic import generate

    started = time.perf_counter()
    frames = generate(users, items, n, seed=7)
    seconds = time.perf_counter() - started
    frames.interactions.to_parquet(folder / "interactions.parquet", index=False)
    return {"seconds": seconds}


def step_ingest(folder: Path) -> dict:
    """Ingest the interactions into a fresh SQLite store, in one transaction."""
    import pandas as pd

    from reco.data.schema import Frames
    from reco.store.db import open_store
    from reco.store.repository import ingest

    frame = pd.read_parquet(folder / "interactions.parquet")
    engine = open_store(f"sqlite:///{folder / 'store.db'}")
    started = time.perf_counter()
    report = ingest(engine, Frames(frame), source="scale benchmark")
    return {"seconds": time.perf_counter() - started, "rows": report.interactions_added}


def step_fit(folder: Path, name: str) -> dict:
    """Fit one reco model on the whole dataset."""
    from reco.errors import ConfigurationError
    from reco.models import create_model

    data = _load_dataset(folder)
    data.matrix()
    model = create_model(name, **(ALS_PARAMS if name == "als" else {}))
    started = time.perf_counter()
    try:
        model.fit(data)
    except ConfigurationError as exc:
        return {
            "seconds": None,
            "note": str(exc).split(":")[0] + " (refused: catalogue over its limit)",
        }
    return {"seconds": time.perf_counter() - started}


def step_implicit_als(folder: Path) -> dict:
    """Fit implicit's own ALS on the same matrix with the same parameters."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = _load_dataset(folder).matrix()
    model = AlternatingLeastSquares(random_state=42, **ALS_PARAMS)
    started = time.perf_counter()
    # One BLAS thread under implicit's own threads, as implicit advises and reco does.
    with threadpool_limits(1, "blas"):
        model.fit(matrix, show_progress=False)
    return {"seconds": time.perf_counter() - started}


def _child(queue, function, args) -> None:
    result = function(*args)
    result["peak_mb"] = _peak_rss_mb()
    queue.put(result)


def run_isolated(function, *args) -> dict:
    """Run a step in a fresh process; return its result with the process's peak RSS."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    result = queue.get()
    process.join()
    return result


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated: 1M, 10M")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",")]

    print(
        f"# reco scale benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "synthetic data (reco data synth), each step in its own process; "
        "peak = that process's max RSS\n"
    )
    rows = []
    for size in sizes:
        n, users, items = SHAPES[size]
        with tempfile.TemporaryDirectory(prefix=f"reco-scale-{size}-") as tmp:
            folder = Path(tmp)
            print(f"{size}: {n:,} interactions, {users:,} users, {items:,} items", flush=True)
            results = {"generate": run_isolated(step_generate, folder, n, users, items)}
            results["ingest (SQLite)"] = run_isolated(step_ingest, folder)
            for name in MODELS:
                results[f"fit {name}"] = run_isolated(step_fit, folder, name)
            results["fit implicit ALS (reference)"] = run_isolated(step_implicit_als, folder)
            for step, result in results.items():
                print(
                    f"  {step}: {_fmt(result['seconds'])} s, peak {result['peak_mb']:,.0f} MB",
                    flush=True,
                )
            rows.append((size, results))

    print("\n| data | step | seconds | peak RSS (MB) | note |")
    print("|---|---|---:|---:|---|")
    for size, results in rows:
        for step, result in results.items():
            note = result.get("note", "")
            if step == "ingest (SQLite)" and result["seconds"]:
                note = f"{result['rows'] / result['seconds']:,.0f} rows/s"
            print(
                f"| {size} | {step} | {_fmt(result['seconds'])} | "
                f"{result['peak_mb']:,.0f} | {note} |"
            )
    print("\n| data | reco ALS fit s | implicit ALS fit s | overhead ratio |")
    print("|---|---:|---:|---:|")
    for size, results in rows:
        ours, theirs = (
            results["fit als"]["seconds"],
            results["fit implicit ALS (reference)"]["seconds"],
        )
        print(f"| {size} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
