"""The index directory on disk, looked at before Chroma opens it: whether it is of the right
kind, whether its database looks intact, whether it can be written, and what a chromadb error
says about it.

Chroma must not see a damaged database first: chromadb 1.5.9 opens a 0-byte ``chroma.sqlite3``
as a new, empty database (and writes one into it), so ``twn-rag index`` would start a new index
over the old one and orphan its images. A truncated or overwritten database makes chromadb
raise ``InternalError`` with SQLite's code; those errors are turned into ``IndexDamagedError``.

Layout::

    <index_dir>/chroma/chroma.sqlite3      records, metadata and the write-ahead log
    <index_dir>/chroma/<segment uuid>/     the HNSW vector index (header.bin, data_level0.bin...)
    <index_dir>/images/                    rendered pages and sampled frames
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twn_rag.index.errors import (
    IndexDamagedError,
    IndexReadOnlyError,
    IndexStoreError,
    IndexUnusableError,
)

CHROMA_SUBDIR = "chroma"
IMAGES_SUBDIR = "images"
DATABASE_FILENAME = "chroma.sqlite3"

# The SQLite file format (https://www.sqlite.org/fileformat.html#the_database_header).
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_SIZE = 100
_SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_WRITE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def database_file(index_dir: Path) -> Path:
    """Where the embedded Chroma database of ``index_dir`` lives."""
    return index_dir / CHROMA_SUBDIR / DATABASE_FILENAME


def segment_dirs(chroma_dir: Path) -> list[Path]:
    """The vector segment folders (HNSW) of an embedded Chroma database."""
    if not chroma_dir.is_dir():
        return []
    return sorted(p for p in chroma_dir.iterdir() if p.is_dir() and _SEGMENT_DIR.fullmatch(p.name))


def sqlite_header_damage(path: Path) -> str | None:
    """What is wrong with the SQLite file ``path`` judging by its size and header (cheap: the
    first 100 bytes and a stat), as a phrase (``is empty (0 bytes)``), or ``None`` when it looks
    intact. Damage inside pages is found by ``PRAGMA integrity_check`` (``twn_rag.index.check``)
    or when SQLite reads them."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as handle:
        header = handle.read(SQLITE_HEADER_SIZE)
    if len(header) < SQLITE_HEADER_SIZE:
        return f"is cut short ({size} bytes, less than an SQLite header)"
    if not header.startswith(SQLITE_MAGIC):
        return "is not an SQLite database (its header is damaged or overwritten)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"has a damaged header (page size {page_size})"
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count holds only when its "version valid for" equals the change counter.
    if pages and header[92:96] == header[24:28] and size < pages * page_size:
        return f"is truncated ({size} bytes; its header declares {pages * page_size})"
    if size % page_size:
        return f"is truncated ({size} bytes, not a whole number of {page_size}-byte pages)"
    return None


@dataclass(frozen=True)
class IndexDirectory:
    """What ``inspect`` found: whether a database exists, and the first path that a writer
    would need to write but cannot (``None`` when the index can be written)."""

    path: Path
    has_database: bool
    unwritable: Path | None


def _damaged(index_dir: Path, what: str) -> IndexDamagedError:
    return IndexDamagedError(f"index {index_dir} is damaged: {what}", f"twn-rag check --index {index_dir}")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _first_unwritable(paths: list[Path]) -> Path | None:
    # os.access answers for this process: root may write a chmod-ed file, nobody a read-only mount.
    return next((p for p in paths if not os.access(p, os.W_OK)), None)


def require_folder(index_dir: Path) -> None:
    """``IndexUnusableError`` when ``index_dir`` exists and is not a folder."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexUnusableError(f"index path {index_dir} is a file, not an index directory; give a folder")


def make_folder(index_dir: Path) -> None:
    """Create ``index_dir`` (and its parents) if missing; an error naming it when that fails."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(index_dir, exc, writing=True) from exc


def inspect(index_dir: Path) -> IndexDirectory:
    """Look at ``index_dir`` before Chroma opens it. ``IndexUnusableError`` when it, its
    ``chroma`` folder or its database is not of the right kind (a file where a folder belongs)
    or cannot be read; ``IndexDamagedError`` when the database is empty, cut short or
    overwritten, or gone from a folder that still holds its vector segments."""
    try:
        return _inspect(index_dir)
    except OSError as exc:
        raise os_error(index_dir, exc, writing=False) from exc


def _inspect(index_dir: Path) -> IndexDirectory:
    require_folder(index_dir)
    chroma_dir = index_dir / CHROMA_SUBDIR
    if chroma_dir.exists() and not chroma_dir.is_dir():
        raise IndexUnusableError(
            f"{chroma_dir} is a file, not a Chroma database folder: {index_dir} is not a twn-rag index"
        )
    database = chroma_dir / DATABASE_FILENAME
    if database.exists() and not database.is_file():
        raise IndexUnusableError(f"{database} is not a regular file: {index_dir} is not a twn-rag index")
    segments = segment_dirs(chroma_dir)
    if database.is_file():
        damage = sqlite_header_damage(database)
        if damage is not None:
            raise _damaged(index_dir, f"its database {database} {damage}")
    elif segments:
        raise _damaged(index_dir, f"its database {database} is missing, while {chroma_dir} still holds vector segments")
    if not database.is_file():
        return IndexDirectory(index_dir, False, _first_unwritable([_nearest_existing(index_dir)]))
    needed = [chroma_dir, database, *segments, *(f for s in segments for f in s.iterdir())]
    images = index_dir / IMAGES_SUBDIR
    needed.append(images if images.exists() else index_dir)
    return IndexDirectory(index_dir, True, _first_unwritable(needed))


def read_only_error(index_dir: Path, unwritable: Path | str) -> IndexReadOnlyError:
    """The error for writing to an index that cannot be written."""
    return IndexReadOnlyError(
        f"index {index_dir} is read-only ({unwritable} cannot be written): index, delete and check --repair "
        "need write access; search, info and check work on it as it is"
    )


def os_error(index_dir: Path, exc: OSError, *, writing: bool) -> IndexUnusableError:
    """An ``OSError`` met reading, or (``writing``) creating or writing, the index directory."""
    if writing and exc.errno in _WRITE_ERRNOS:
        return read_only_error(index_dir, exc.filename or index_dir)
    what = f"{exc.filename}: " if exc.filename else ""
    return IndexUnusableError(f"cannot {'write' if writing else 'read'} index {index_dir}: {what}{exc.strerror or exc}")


# What chromadb's errors say, by the SQLite result code or OS error in their message.
_DAMAGE_MARKERS = ("(code: 11)", "(code: 26)", "malformed", "file is not a database")
_READ_ONLY_MARKERS = ("(code: 8)", "readonly database", "os error 30")
# File exists (a file where a folder belongs), not a directory, is a directory, permission denied.
_CANNOT_OPEN_MARKERS = ("os error 17", "os error 20", "os error 21", "os error 13")


@contextmanager
def chroma_errors_as_index_errors(index_dir: Path | str) -> Iterator[None]:
    """Raise what a chromadb error in the block says about the index (``chroma_failure``)
    instead of the error itself; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        failure = chroma_failure(exc, index_dir)
        if failure is None or failure is exc:
            raise
        raise failure from exc


def chroma_failure(exc: BaseException, index_dir: Path | str) -> IndexStoreError | None:
    """The index error a chromadb exception stands for (a damaged database, a read-only one, a
    file where a folder belongs), or ``None`` when it says nothing about the index directory
    (or is not chromadb's)."""
    if isinstance(exc, IndexStoreError):
        return exc
    if not type(exc).__module__.startswith("chromadb"):
        return None
    text = str(exc)
    index_dir = Path(index_dir)
    if any(marker in text for marker in _DAMAGE_MARKERS):
        return _damaged(index_dir, f"its Chroma database cannot be read ({text})")
    if any(marker in text for marker in _READ_ONLY_MARKERS):
        return read_only_error(index_dir, index_dir / CHROMA_SUBDIR)
    if any(marker in text for marker in _CANNOT_OPEN_MARKERS):
        return IndexUnusableError(f"index {index_dir} cannot be opened: {text}")
    return None
