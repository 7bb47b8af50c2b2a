"""Helpers for the data tests: tiny MovieLens-format folders built on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

GENRE_COUNT = 19


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(GENRE_COUNT))


def write_fake_ml100k(root: Path) -> Path:
    """Write a 3-user, 3-film folder in the ml-100k format under ``root/ml-100k``."""
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(
        "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n3\t3\t1\t881250952\n"
    )
    (folder / "u.item").write_bytes(
        (
            f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags(3, 4, 5)}\n"
            f"2|GoldenEye (1995)|01-Jan-1995||http://x/2|{_flags(1, 2, 16)}\n"
            f"3|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x/3|{_flags(8)}\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"
    )
    return folder


@pytest.fixture()
def fake_ml100k(tmp_path: Path) -> Path:
    """A tiny ml-100k-format folder (latin-1 u.item like the real one)."""
    return write_fake_ml100k(tmp_path / "src")
