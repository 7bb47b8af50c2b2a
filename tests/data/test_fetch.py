"""Dataset download: checksum, safe unpacking, cache reuse — against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reco.config import Settings
from reco.data.fetch import (
    DATASETS,
    MARKER,
    default_search_dirs,
    fetch_dataset,
    find_local_movielens,
    resolve_name,
)
from reco.data.movielens import load_movielens
from reco.errors import RecoError

from .conftest import write_fake_ml100k


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/datasets"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    (root / "datasets").mkdir(parents=True)
    srv = _Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _zip_folder(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> str:
    """Zip ``folder`` (as its own top-level directory) and return the zip's sha256."""
    with zipfile.ZipFile(zip_path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder.parent).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return hashlib.sha256(zip_path.read_bytes()).hexdigest()


@pytest.fixture()
def served_ml100k(tmp_path: Path, server: _Server) -> tuple[_Server, str]:
    folder = write_fake_ml100k(tmp_path / "build")
    sha = _zip_folder(folder, server.root / "datasets" / "ml-100k.zip")
    return server, sha


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_fetch_downloads_verifies_unpacks_and_reports_progress(tmp_path, served_ml100k):
    server, sha = served_ml100k
    cache = tmp_path / "cache"
    calls: list[tuple[int, int | None]] = []
    folder = fetch_dataset(
        "movielens-100k",
        cache,
        base_url=server.base_url,
        expected_sha256=sha,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert folder == cache / "ml-100k"
    assert (folder / MARKER).is_file()
    assert _leftovers(cache) == ["ml-100k"]  # no temporary download or staging left
    size = (server.root / "datasets" / "ml-100k.zip").stat().st_size
    assert calls[-1] == (size, size)
    frames = load_movielens(folder)
    assert len(frames.interactions) == 4
    assert server.requests == ["/datasets/ml-100k.zip"]


def test_second_fetch_uses_the_cache_without_downloading(tmp_path, served_ml100k):
    server, sha = served_ml100k
    cache = tmp_path / "cache"
    first = fetch_dataset("movielens-100k", cache, base_url=server.base_url, expected_sha256=sha)
    second = fetch_dataset("ml-100k", cache, base_url=server.base_url, expected_sha256=sha)
    assert first == second
    assert len(server.requests) == 1


def test_checksum_mismatch_caches_nothing(tmp_path, served_ml100k):
    server, _ = served_ml100k
    cache = tmp_path / "cache"
    with pytest.raises(RecoError, match=r"Checksum mismatch.*nothing was cached"):
        fetch_dataset("movielens-100k", cache, base_url=server.base_url, expected_sha256="0" * 64)
    assert _leftovers(cache) == []


def test_pinned_checksum_applies_when_none_is_given(tmp_path, served_ml100k):
    server, _ = served_ml100k  # the fake zip cannot match the real ml-100k's sha256
    with pytest.raises(RecoError, match=DATASETS["movielens-100k"].sha256):
        fetch_dataset("movielens-100k", tmp_path / "cache", base_url=server.base_url)


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(RecoError, match=r"Unknown dataset 'netflix'.*movielens-100k"):
        fetch_dataset("netflix", tmp_path)


@pytest.mark.parametrize("evil_member", ["ml-100k/../../evil.txt", "/tmp/evil.txt", "../evil.txt"])
def test_path_traversal_zip_is_rejected(tmp_path, server, evil_member):
    folder = write_fake_ml100k(tmp_path / "build")
    sha = _zip_folder(
        folder, server.root / "datasets" / "ml-100k.zip", extra={evil_member: b"pwned"}
    )
    cache = tmp_path / "area" / "cache"
    with pytest.raises(RecoError, match="unsafe"):
        fetch_dataset("movielens-100k", cache, base_url=server.base_url, expected_sha256=sha)
    assert _leftovers(cache) == []
    assert not list((tmp_path / "area").rglob("evil.txt"))


def test_not_a_zip_is_rejected(tmp_path, server):
    body = b"<html>maintenance</html>"
    (server.root / "datasets" / "ml-100k.zip").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(RecoError, match="not a valid zip"):
        fetch_dataset("movielens-100k", cache, base_url=server.base_url, expected_sha256=sha)
    assert _leftovers(cache) == []


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(RecoError, match="HTTP 404"):
        fetch_dataset("movielens-1m", tmp_path / "cache", base_url=server.base_url)


def test_registry_holds_pinned_grouplens_sources():
    assert {"movielens-100k", "movielens-latest-small", "movielens-1m", "movielens-20m"} <= set(
        DATASETS
    )
    for source in DATASETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        assert source.url == f"https://files.grouplens.org/datasets/movielens/{source.folder}.zip"
        assert source.size > 0
    assert resolve_name("ML-1M") == "movielens-1m"


def test_find_local_movielens(tmp_path, fake_ml100k):
    assert find_local_movielens("movielens-100k", [tmp_path / "nowhere", fake_ml100k.parent]) == (
        fake_ml100k
    )
    assert find_local_movielens("ml-100k", [fake_ml100k]) == fake_ml100k
    assert find_local_movielens("movielens-1m", [fake_ml100k.parent]) is None


def test_find_local_movielens_in_shared_data(shared_data_dir):
    found = find_local_movielens("movielens-latest-small", [shared_data_dir])
    assert found == shared_data_dir / "ml-latest-small"


def test_default_search_dirs_start_with_the_configured_folder(tmp_path):
    settings = Settings(home=tmp_path / "home", data_dir=tmp_path / "data")
    dirs = default_search_dirs(settings)
    assert dirs[0] == tmp_path / "data"
    assert dirs[-1] == settings.cache_dir
