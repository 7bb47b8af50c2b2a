"""What the service benchmarks (serving.py, freshness.py) share to start `reco` processes.

Imported as a sibling module: the benchmarks run as scripts, so their folder is first on
``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reco_command() -> list[str]:
    """The `reco` console script of this environment."""
    beside = Path(sys.executable).with_name("reco")
    found = str(beside) if beside.exists() else shutil.which("reco")
    if found is None:
        raise SystemExit("the `reco` command is not installed here; run `make install`")
    return [found]


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM (uvicorn and `reco worker` shut down gracefully), then SIGKILL to the
    process group if it has not stopped within 30 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
