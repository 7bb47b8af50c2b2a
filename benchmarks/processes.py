"""What the service benchmarks (serving.py, freshness.py) share to start `reco` processes.

Imported as a sibling module: the benchmarks run as scripts, so their folder is first on
``sys.path``.
"""

from __future__ import annotations

import shutil
import socket
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
