"""Download public datasets once, verify them, and keep them unpacked in a cache.

``fetch_dataset`` downloads a zip over HTTP(S), checks its sha256 against a pinned
value before anything is kept, unpacks it while refusing members that would land
outside the cache, and marks the folder complete. A second call finds the marker
and does not touch the network. ``find_local_movielens`` finds a copy someone already
unpacked (``RECO_DATA_DIR``, ``../shared/data``, the cache) so nothing is downloaded
at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from reco.config import Settings
from reco.data.movielens import detect_movielens
from reco.errors import RecoError

Progress = Callable[[int, int | None], None]
"""Called with (bytes downloaded so far, total bytes or ``None`` when unknown)."""

MARKER = ".reco-fetched.json"
"""Written into a dataset folder once it is verified and completely unpacked."""

_CHUNK = 1 << 20
# Far above any MovieLens release (ml-25m unpacks to ~1.2 GB); stops zip bombs.
_MAX_UNPACKED_BYTES = 20 * 1024**3


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset is published and how to recognise the genuine file."""

    url: str
    sha256: str
    size: int
    folder: str
    """The folder the zip unpacks to (its top-level directory)."""
    description: str

    @property
    def filename(self) -> str:
        """The zip's file name (last part of the URL)."""
        return PurePosixPath(urlparse(self.url).path).name


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"

# sha256 and sizes as published in tensorflow/datasets' url_checksums/movielens.txt and
# matching GroupLens' MD5 files; ml-10m is absent because no sha256 of it could be found.
DATASETS: dict[str, DatasetSource] = {
    "movielens-100k": DatasetSource(
        url=f"{_GROUPLENS}/ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4_924_029,
        folder="ml-100k",
        description="100,000 ratings, 943 users with demographics, 1,682 films (1998)",
    ),
    "movielens-latest-small": DatasetSource(
        url=f"{_GROUPLENS}/ml-latest-small.zip",
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        size=978_202,
        folder="ml-latest-small",
        description="100,836 ratings and 3,683 tags by 610 users on 9,742 films (2018)",
    ),
    "movielens-1m": DatasetSource(
        url=f"{_GROUPLENS}/ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5_917_549,
        folder="ml-1m",
        description="1,000,209 ratings, 6,040 users with demographics, 3,706 films (2003)",
    ),
    "movielens-20m": DatasetSource(
        url=f"{_GROUPLENS}/ml-20m.zip",
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        size=198_702_078,
        folder="ml-20m",
        description="20,000,263 ratings and 465,564 tags by 138,493 users on 27,278 films",
    ),
    "movielens-25m": DatasetSource(
        url=f"{_GROUPLENS}/ml-25m.zip",
        sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        size=261_978_986,
        folder="ml-25m",
        description="25,000,095 ratings and 1,093,360 tags by 162,541 users on 62,423 films",
    ),
}


def resolve_name(name: str) -> str:
    """The registry name of a dataset; also accepts the folder name (``ml-100k``)."""
    key = name.strip().lower()
    if key in DATASETS:
        return key
    for registered, source in DATASETS.items():
        if key == source.folder:
            return registered
    known = ", ".join(DATASETS)
    raise RecoError(f"Unknown dataset '{name}'. Known datasets: {known}.")


def fetch_dataset(
    name: str,
    cache_dir: Path,
    *,
    base_url: str | None = None,
    expected_sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unpack dataset ``name`` into ``cache_dir``; return its folder.

    A folder fetched before (and marked complete) is returned without downloading.
    ``base_url`` replaces the host and path of the published URL (a mirror, or a
    test server); ``expected_sha256`` replaces the pinned checksum. A checksum
    mismatch, a broken zip or a member escaping the folder raises
    :class:`reco.errors.RecoError` and leaves nothing in the cache.
    """
    key = resolve_name(name)
    source = DATASETS[key]
    sha256 = (expected_sha256 or source.sha256).lower()
    cache_dir = Path(cache_dir)
    target = cache_dir / source.folder
    if _is_complete(target, sha256):
        return target
    url = f"{base_url.rstrip('/')}/{source.filename}" if base_url else source.url
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = _download(url, cache_dir, sha256, progress, timeout, key)
    try:
        _unpack(archive, cache_dir, source.folder, target, url)
    finally:
        archive.unlink(missing_ok=True)
    _write_marker(target, key, url, sha256)
    return target


def find_local_movielens(name: str, search_dirs: list[Path]) -> Path | None:
    """An already unpacked copy of a MovieLens dataset in ``search_dirs``, or ``None``.

    Each directory may hold the dataset's folder (``<dir>/ml-100k``) or be it.
    """
    folder = DATASETS[resolve_name(name)].folder
    for directory in search_dirs:
        directory = Path(directory)
        for candidate in (directory / folder, directory):
            if candidate.name == folder and detect_movielens(candidate) is not None:
                return candidate
    return None


def default_search_dirs(settings: Settings) -> list[Path]:
    """Where unpacked datasets are looked for: ``data_dir``, ``../shared/data``, the cache."""
    dirs = [settings.data_dir] if settings.data_dir else []
    dirs += [Path.cwd().parent / "shared" / "data", settings.cache_dir]
    return [Path(d) for d in dirs]


def locate_or_fetch(name: str, settings: Settings, *, progress: Progress | None = None) -> Path:
    """A local copy of MovieLens dataset ``name`` if one exists, else a verified download."""
    found = find_local_movielens(name, default_search_dirs(settings))
    return (
        found if found is not None else fetch_dataset(name, settings.cache_dir, progress=progress)
    )


# --------------------------------------------------------------------------- steps


def _is_complete(target: Path, sha256: str) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("sha256") == sha256


def _write_marker(target: Path, name: str, url: str, sha256: str) -> None:
    record = {"name": name, "url": url, "sha256": sha256, "fetched_at": int(time.time())}
    (target / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _download(
    url: str,
    cache_dir: Path,
    sha256: str,
    progress: Progress | None,
    timeout: float,
    name: str,
) -> Path:
    """Stream ``url`` into a temporary file of ``cache_dir``, hashing as it arrives."""
    handle, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-", suffix=".zip")
    part = Path(temp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(handle, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "reco-fetch/1"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if progress:
                    progress(0, total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise RecoError(
            f"Downloading {name} from {url} failed: HTTP {exc.code} {exc.reason}. Check the "
            "URL (--base-url), or unpack the zip yourself and set RECO_DATA_DIR to its parent."
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise RecoError(
            f"Could not download {name} from {url}: {reason}. Check the network (or the "
            "HTTPS_PROXY setting), or unpack the zip yourself and set RECO_DATA_DIR to its "
            "parent folder."
        ) from exc
    got = digest.hexdigest()
    if got != sha256:
        part.unlink(missing_ok=True)
        raise RecoError(
            f"Checksum mismatch for {name} from {url}: expected sha256 {sha256}, got {got} "
            f"({done:,} bytes). The download is corrupt or was changed upstream; nothing was "
            "cached. Retry; if the publisher really changed the file, pass its new sha256 "
            "explicitly."
        )
    return part


def _unsafe_reason(member: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be unpacked, or ``None`` when it is safe."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]):
        return "absolute path"
    if ".." in parts:
        return "path goes up with '..'"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "symbolic link"
    return None


def _unpack(archive: Path, cache_dir: Path, folder: str, target: Path, url: str) -> None:
    """Unpack into a staging folder, then move the dataset folder into place."""
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".unpack-"))
    try:
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
                for member in members:
                    reason = _unsafe_reason(member)
                    if reason:
                        raise RecoError(
                            f"Refusing the zip from {url}: member '{member.filename}' is "
                            f"unsafe ({reason}); nothing was unpacked or cached."
                        )
                if sum(member.file_size for member in members) > _MAX_UNPACKED_BYTES:
                    raise RecoError(
                        f"Refusing the zip from {url}: it unpacks to more than "
                        f"{_MAX_UNPACKED_BYTES // 1024**3} GB; nothing was cached."
                    )
                zipped.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise RecoError(
                f"The file from {url} is not a valid zip ({exc}); nothing was cached. Retry."
            ) from exc
        unpacked = staging / folder
        if not unpacked.is_dir():
            top = sorted(p.name for p in staging.iterdir())
            raise RecoError(
                f"The zip from {url} has no folder '{folder}' (found {top}); nothing was cached."
            )
        if target.exists():
            shutil.rmtree(target)  # an earlier, unfinished fetch
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
