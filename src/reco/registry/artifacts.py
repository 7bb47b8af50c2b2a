"""The model registry on disk.

Layout under ``root`` (``RECO_HOME/models``)::

    <version>/manifest.json     what the version is: metrics, config hash, data
                                fingerprint, library versions, sha256 of every file
    <version>/...               the files the training job wrote (plain formats)
    current -> <version>        symlink, swapped atomically with os.replace
    history.jsonl               every promotion, for rollback, and every retrained
                                version kept unpromoted (``"action": "not_promoted"``)

A version is written into a hidden temporary folder and renamed into place only when
complete, so a reader never sees half a version. Loading checks every file against
the manifest's checksums, so a damaged artifact fails loudly instead of serving junk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reco.errors import ArtifactError

MANIFEST = "manifest.json"
CURRENT = "current"
HISTORY = "history.jsonl"


@dataclass(frozen=True)
class ModelVersion:
    """One published version: its folder and its manifest."""

    version: str
    path: Path
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): _sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


class ModelRegistry:
    """Publish, list, verify, promote and roll back model versions under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def new_version(self, manifest: dict[str, Any]) -> Iterator[tuple[str, Path]]:
        """Yield (version, folder) to write a version into; publish it when the block ends.

        The manifest gets the version, creation time and file checksums added. If the
        block raises, the partial folder is removed and nothing is published.
        """
        created = datetime.now(UTC)
        version = created.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{version}"
        staging.mkdir()
        try:
            yield version, staging
            full = {
                "version": version,
                "created_at": created.isoformat(),
                **manifest,
                "files": _checksums(staging),
            }
            (staging / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
            os.replace(staging, self.root / version)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def versions(self) -> list[ModelVersion]:
        """Every published version, oldest first (unreadable ones are skipped)."""
        found = []
        if not self.root.exists():
            return found
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and (folder / MANIFEST).exists():
                try:
                    manifest = json.loads((folder / MANIFEST).read_text())
                except ValueError:
                    continue
                found.append(ModelVersion(folder.name, folder, manifest))
        return found

    def current_version(self) -> str | None:
        """The version the `current` pointer names, or None before the first promotion."""
        pointer = self.root / CURRENT
        if not pointer.is_symlink():
            return None
        return os.readlink(pointer)

    def get(self, version: str | None = None) -> ModelVersion:
        """A verified version (default: current); ArtifactError if missing or damaged."""
        version = version or self.current_version()
        if version is None:
            raise ArtifactError(
                f"no model has been trained yet under {self.root}; run `reco train` first"
            )
        folder = self.root / version
        if "/" in version or version.startswith(".") or not folder.is_dir():
            raise ArtifactError(f"model version {version!r} does not exist under {self.root}")
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"model version {version} has an unreadable manifest ({exc}); "
                "retrain with `reco train` or promote another version"
            ) from exc
        expected = manifest.get("files", {})
        actual = _checksums(folder)
        damaged = sorted(
            name for name in set(expected) | set(actual) if expected.get(name) != actual.get(name)
        )
        if damaged:
            raise ArtifactError(
                f"model version {version} is corrupted: {', '.join(damaged[:5])} "
                "differ from the manifest (missing, changed or unexpected). "
                "Retrain with `reco train` or promote another version."
            )
        return ModelVersion(version, folder, manifest)

    def promote(self, version: str, *, reason: str | None = None) -> None:
        """Point `current` at ``version`` atomically and record it (and why) in the history."""
        self.get(version)  # refuse to promote a damaged or missing version
        temporary = self.root / f".current-{uuid.uuid4().hex}"
        os.symlink(version, temporary)
        os.replace(temporary, self.root / CURRENT)
        entry = {"version": version, "at": datetime.now(UTC).isoformat()}
        if reason is not None:
            entry.update(action="promote", reason=reason)
        self._append_history(entry)

    def record_not_promoted(self, version: str, reason: str) -> None:
        """Note in the history that ``version`` was published but kept from serving."""
        self.get(version)
        self._append_history(
            {
                "version": version,
                "at": datetime.now(UTC).isoformat(),
                "action": "not_promoted",
                "reason": reason,
            }
        )

    def history(self) -> list[dict[str, Any]]:
        """Every history entry, oldest first (promotions have no action or "promote")."""
        if not (self.root / HISTORY).exists():
            return []
        with (self.root / HISTORY).open() as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def annotate(self, version: str, extra: dict[str, Any]) -> None:
        """Add top-level keys to a published version's manifest (atomically replaced).

        The manifest is not among the checksummed files, so the version stays valid;
        keys it already has are refused (a manifest's facts are never rewritten).
        """
        entry = self.get(version)
        clash = sorted(set(extra) & set(entry.manifest))
        if clash:
            raise ArtifactError(
                f"model version {version} already has manifest keys {clash}; annotate with new keys"
            )
        # Written beside the versions, not inside one: a reader never sees an extra file.
        temporary = self.root / f".{MANIFEST}-{uuid.uuid4().hex}"
        temporary.write_text(json.dumps({**entry.manifest, **extra}, indent=2, sort_keys=True))
        os.replace(temporary, entry.path / MANIFEST)

    def _append_history(self, entry: dict[str, Any]) -> None:
        with (self.root / HISTORY).open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def rollback(self) -> str:
        """Promote the version that was current before the present one; returns it."""
        current = self.current_version()
        history = [
            entry["version"]
            for entry in self.history()
            if entry.get("action", "promote") == "promote"
        ]
        earlier = [v for v in reversed(history) if v != current and (self.root / v).is_dir()]
        if not earlier:
            raise ArtifactError("there is no earlier promoted version to roll back to")
        self.promote(earlier[0])
        return earlier[0]
