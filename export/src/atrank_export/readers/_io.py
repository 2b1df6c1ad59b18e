"""File helpers shared by the readers: transparent gzip, line iteration, error locations."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_text(path: Path, encoding: str = "utf-8") -> TextIO:
    """Open ``path`` for reading text; gzip is detected by its magic bytes, not the name."""
    path = Path(path)
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for the non-blank lines of a text file (gzip or not)."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def strip_gz(path: Path) -> str:
    """Lower-cased file name without a trailing ``.gz``."""
    name = Path(path).name.lower()
    return name.removesuffix(".gz")
