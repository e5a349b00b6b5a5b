"""Damage done to a real index directory, the way it happens outside: a database emptied, cut
short or overwritten, the HNSW folder or the images deleted, the index made read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twn_rag.index.client import forget_cached_system
from twn_rag.index.directory import DATABASE_FILENAME, IMAGES_SUBDIR, segment_dirs

# HNSW settings under which chromadb persists the vector index and purges its write-ahead log
# after every couple of records, as a large index does after thousands: deleting the HNSW folder
# then loses records for good (with the defaults a small index is rebuilt from the log).
SMALL_HNSW_CONFIGURATION = {"hnsw": {"space": "cosine", "sync_threshold": 2, "batch_size": 2}}


def chroma_dir(index_dir: Path) -> Path:
    return index_dir / "chroma"


def database(index_dir: Path) -> Path:
    return chroma_dir(index_dir) / DATABASE_FILENAME


def release_chroma(index_dir: Path) -> None:
    """Stop this process's chromadb system for the index, as if the process that wrote it had
    exited: the damage done next is what the next process finds on disk."""
    forget_cached_system(str(chroma_dir(index_dir)))


def empty_database(index_dir: Path) -> None:
    release_chroma(index_dir)
    database(index_dir).write_bytes(b"")


def truncate_database(index_dir: Path) -> None:
    release_chroma(index_dir)
    path = database(index_dir)
    os.truncate(path, path.stat().st_size // 2)


def overwrite_header(index_dir: Path) -> None:
    release_chroma(index_dir)
    with open(database(index_dir), "r+b") as handle:
        handle.write(b"\x00" * 100)


def delete_vector_segments(index_dir: Path) -> None:
    release_chroma(index_dir)
    for folder in segment_dirs(chroma_dir(index_dir)):
        shutil.rmtree(folder)


def delete_images(index_dir: Path) -> None:
    shutil.rmtree(index_dir / IMAGES_SUBDIR)


def create_small_hnsw_collection(index_dir: Path, name: str = "twn") -> None:
    """Create the (empty) collection an index then takes over, with ``SMALL_HNSW_CONFIGURATION``."""
    import chromadb

    client = chromadb.PersistentClient(path=str(chroma_dir(index_dir)))
    client.create_collection(name, configuration=SMALL_HNSW_CONFIGURATION, embedding_function=None)


def _read_only_mount_prefix(path: Path) -> list[str] | None:
    """A command prefix that runs a command with ``path`` mounted read-only (a private mount
    namespace, so nothing outlives the command), or ``None`` when this process cannot make mounts."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return None
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    prefix = ["unshare", "--mount", "sh", "-c", script, "sh", str(path)]
    probe = subprocess.run([*prefix, "sh", "-c", f'! touch "{path}/.probe" 2>/dev/null'], capture_output=True)
    return prefix if probe.returncode == 0 else None


@contextmanager
def read_only(path: Path) -> Iterator[list[str] | None]:
    """Make ``path`` read-only for commands run with the yielded prefix: for a user, by taking
    away write permission (restored afterwards); for root, who ignores permissions, by a
    read-only bind mount in a private mount namespace. Yields ``None`` when neither can be done."""
    if os.geteuid() == 0:
        yield _read_only_mount_prefix(path)
        return
    entries = [path, *path.rglob("*")]
    modes = {entry: entry.stat().st_mode for entry in entries}
    for entry in entries:
        entry.chmod(modes[entry] & ~0o222)
    try:
        yield []
    finally:
        for entry in reversed(entries):
            entry.chmod(modes[entry])


def write_documents(folder: Path, video: Path) -> Path:
    """A 3-page PDF, a 2 s video (4 frames) and an image under ``folder``."""
    from twn_rag.samples import make_sample_image, write_sample_pdf

    folder.mkdir(parents=True, exist_ok=True)
    write_sample_pdf(folder / "manual.pdf", ["Install the tool.", "Configure the budget.", "A red square."])
    shutil.copy(video, folder / "clip.mp4")
    make_sample_image((80, 60), seed=4).save(folder / "figure.png")
    return folder


def copy_index(source: Path, target: Path) -> Path:
    """A copy of the released index ``source`` (``release_chroma`` first) at ``target``."""
    release_chroma(source)
    shutil.copytree(source, target)
    return target
