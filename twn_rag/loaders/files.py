"""Which files can be loaded: kinds by extension, folder walking, and each file's identity
(canonical source path, content hash, stable item ids). Only regular files are ever opened:
a FIFO would block, a device never end, and a symbolic link loop cannot be resolved."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from twn_rag.loaders.items import FileFailure, LoadError, utf8_safe

PDF_SUFFIXES = frozenset({".pdf"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
KINDS = {
    **dict.fromkeys(PDF_SUFFIXES, "pdf"),
    **dict.fromkeys(VIDEO_SUFFIXES, "video"),
    **dict.fromkeys(IMAGE_SUFFIXES, "image"),
}
_HASH_BLOCK = 1 << 20


def file_kind(path: str | Path) -> str | None:
    """``pdf``, ``video`` or ``image`` from the file extension; ``None`` when unsupported."""
    return KINDS.get(Path(path).suffix.lower())


_SPECIAL_FILES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def canonical_source(path: str | Path) -> str:
    """The absolute path under which a file's items are stored (and found again), symbolic
    links resolved; ``utf8_safe``, so a name that is not valid UTF-8 is stored escaped."""
    return utf8_safe(str(Path(path).expanduser().resolve()))


def _special_file_reason(mode: int) -> str:
    kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: only regular files are read"


def unreadable_reason(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file that can be read (``None`` when it is), from ``stat``
    alone (symbolic links followed), so nothing is opened: a symbolic link loop, a broken
    link, a missing path, a FIFO, a device or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the link cannot be resolved"
        if exc.errno == errno.ENOENT:
            broken_link = os.path.islink(path)
            return "broken symbolic link (its target does not exist)" if broken_link else "no such file or folder"
        return f"cannot read file ({exc.strerror or exc})"
    except ValueError as exc:  # e.g. a NUL byte in the name
        return f"invalid path ({exc})"
    return None if stat.S_ISREG(mode) else _special_file_reason(mode)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a regular file's bytes, read in blocks. Opened without blocking and
    checked on the open descriptor, so a FIFO or device swapped in is refused (``OSError``),
    never read."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, _special_file_reason(mode))
        digest = hashlib.sha256()
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRef:
    """A file about to be loaded: its kind, canonical source path and content hash."""

    path: Path
    kind: str
    source: str
    content_hash: str
    source_digest: str

    @classmethod
    def describe(cls, path: str | Path, kind: str | None = None) -> FileRef:
        """Hash ``path``; ``LoadError`` when it is missing, not a regular file (nothing else is
        opened), unreadable or of no supported kind."""
        path = Path(path)
        kind = kind or file_kind(path)
        if kind is None:
            raise LoadError(path, f"unsupported file type {path.suffix or '(no extension)'!r}")
        reason = unreadable_reason(path)
        if reason is not None:
            raise LoadError(path, reason)
        try:
            content_hash = file_sha256(path)
        except OSError as exc:
            raise LoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
        resolved = path.expanduser().resolve()
        # The digest is of the path's bytes: two names that escape to one stored source stay apart.
        source_digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:8]
        return cls(path, kind, utf8_safe(str(resolved)), content_hash, source_digest)

    def item_id(self, locator: str) -> str:
        """Stable id: content hash, a digest of the source path (two copies of one file stay
        two items), and the item's place in the file (``p0003``, ``t000012500``...)."""
        return f"{self.content_hash[:32]}-{self.source_digest}-{locator}"

    def owns(self, item_id: str) -> bool:
        """Whether ``item_id`` is an item of this path (of any version of its content)."""
        return item_id.split("-")[1:2] == [self.source_digest]

    def base_metadata(self) -> dict[str, str]:
        return {
            "source": self.source,
            "file_name": utf8_safe(self.path.name),
            "source_type": self.kind,
            "content_hash": self.content_hash,
        }


@dataclass
class Discovery:
    """Files found under the given paths, in a stable order, with what was left out and why:
    ``skipped`` (met while walking folders: unsupported files, symbolic link loops, FIFOs,
    devices, links to folders, unreadable folders) and ``failures`` (named paths that do not
    exist, are not regular files or are not supported)."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[FileFailure] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)


def discover_files(paths: Iterable[str | Path]) -> Discovery:
    """Walk ``paths`` (files and folders, recursively; hidden entries in folders ignored,
    symbolic links to folders not followed). Nothing is opened: entries are told apart by
    ``stat``, so a FIFO, a device or a link loop is listed with its reason, never read."""
    found = Discovery()
    seen: set[str] = set()

    def leave_out(path: Path, reason: str, named: bool) -> None:
        (found.failures if named else found.skipped).append(FileFailure(str(path), reason))

    def consider(path: Path, named: bool) -> None:
        reason = unreadable_reason(path)
        key = canonical_source(path) if reason is None else os.path.abspath(path)
        if key in seen:
            return
        seen.add(key)
        if reason is not None:
            leave_out(path, reason, named)
            return
        kind = file_kind(path)
        if kind is None:
            leave_out(path, f"unsupported file type {path.suffix or '(no extension)'!r}", named)
            return
        found.files.append((path, kind))

    def unreadable_folder(exc: OSError) -> None:
        leave_out(Path(exc.filename), f"cannot read folder ({exc.strerror or exc})", named=False)

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            consider(path, named=True)
            continue
        for root, dirs, names in os.walk(path, onerror=unreadable_folder):
            visible = sorted(d for d in dirs if not d.startswith("."))
            links = [d for d in visible if os.path.islink(os.path.join(root, d))]
            for name in links:
                leave_out(Path(root) / name, "symbolic link to a folder (not followed)", named=False)
            dirs[:] = [d for d in visible if d not in links]
            for name in sorted(names):
                if not name.startswith("."):
                    consider(Path(root) / name, named=False)
    return found
