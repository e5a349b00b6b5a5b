"""Which files can be loaded: kinds by extension, folder walking, and each file's identity
(canonical source path, content hash, stable item ids)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from twn_rag.loaders.items import FileFailure, LoadError

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


def canonical_source(path: str | Path) -> str:
    """The absolute path under which a file's items are stored (and found again)."""
    return str(Path(path).expanduser().resolve())


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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

    @classmethod
    def describe(cls, path: str | Path, kind: str | None = None) -> FileRef:
        """Hash ``path``; ``LoadError`` when it is missing, unreadable or of no supported kind."""
        path = Path(path)
        kind = kind or file_kind(path)
        if kind is None:
            raise LoadError(path, f"unsupported file type {path.suffix or '(no extension)'!r}")
        try:
            content_hash = file_sha256(path)
        except OSError as exc:
            raise LoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
        return cls(path, kind, canonical_source(path), content_hash)

    def item_id(self, locator: str) -> str:
        """Stable id: content hash, a digest of the source path (two copies of one file stay
        two items), and the item's place in the file (``p0003``, ``t000012500``...)."""
        source_digest = hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:8]
        return f"{self.content_hash[:32]}-{source_digest}-{locator}"

    def base_metadata(self) -> dict[str, str]:
        return {
            "source": self.source,
            "file_name": self.path.name,
            "source_type": self.kind,
            "content_hash": self.content_hash,
        }


@dataclass
class Discovery:
    """Files found under the given paths, in a stable order, with what was left out and why:
    ``skipped`` (unsupported files met while walking folders) and ``failures`` (named paths
    that do not exist or are not supported)."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[FileFailure] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)


def discover_files(paths: Iterable[str | Path]) -> Discovery:
    """Walk ``paths`` (files and folders, recursively; hidden entries in folders ignored)."""
    found = Discovery()
    seen: set[str] = set()

    def consider(path: Path, named: bool) -> None:
        key = canonical_source(path)
        if key in seen:
            return
        seen.add(key)
        kind = file_kind(path)
        if kind is not None:
            found.files.append((path, kind))
            return
        reason = f"unsupported file type {path.suffix or '(no extension)'!r}"
        (found.failures if named else found.skipped).append(FileFailure(str(path), reason))

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        consider(Path(root) / name, named=False)
        elif path.is_file():
            consider(path, named=True)
        else:
            found.failures.append(FileFailure(str(path), "no such file or folder"))
    return found
