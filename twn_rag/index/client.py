"""Chroma clients: embedded ``PersistentClient`` under the index directory, or a server by URL."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from twn_rag.index.directory import CHROMA_SUBDIR, DATABASE_FILENAME, chroma_failure
from twn_rag.index.errors import IndexConnectionError
from twn_rag.index.locking import exclusive_lock
from twn_rag.index.read_only import discard_copy, remove_when_closed, snapshot

DEFAULT_CHROMA_PORT = 8000
# Vectors are L2-normalised, so cosine distance is the natural metric; score = 1 - distance.
COSINE_CONFIGURATION = {"hnsw": {"space": "cosine"}}
# Held while a process creates a new embedded database (see ``connect_path``).
CREATE_LOCK_FILENAME = "twn-create.lock"


def _settings():
    """Chroma's default settings, as LangChain and LlamaIndex create them (chromadb refuses a
    second client on one path with other settings), with telemetry off unless the user asked
    for it: no network beyond the store itself."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from chromadb.config import Settings

    return Settings()


def describe_client(client) -> str:
    """Where a chromadb client stores: its database folder, or its server's URL."""
    settings = client.get_settings()
    if settings.is_persistent and settings.persist_directory:
        return str(settings.persist_directory)
    scheme = "https" if settings.chroma_server_ssl_enabled else "http"
    return f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}"


def forget_cached_system(path: str) -> None:
    """Stop and drop the system chromadb caches in this process for the embedded database at
    ``path`` (every ``PersistentClient`` on one path shares it). Needed when it failed to start
    (chromadb keeps it, and every later client on the path would get the broken one) and when
    the database folder was moved away (the cached one would go on writing to the moved files)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.pop(path, None)
    SharedSystemClient._identifier_to_refcount.pop(path, None)
    if system is not None:
        with contextlib.suppress(Exception):  # one that failed to start may not stop cleanly: dropped anyway
            system.stop()


def connect(index_dir: Path, chroma_url: str | None = None):
    """An embedded client storing under ``index_dir/chroma``, or an ``HttpClient`` for
    ``chroma_url`` (``http[s]://host[:port]``). ``IndexConnectionError`` when the server does
    not answer, or when this process already opened the embedded database with other settings;
    ``IndexDamagedError`` / ``IndexReadOnlyError`` / ``IndexUnusableError`` when chromadb cannot
    open the embedded database (``directory.chroma_failure``); ``ValueError`` for a malformed URL."""
    return connect_path(index_dir / CHROMA_SUBDIR) if chroma_url is None else connect_url(chroma_url)


def connect_path(path: Path):
    """An embedded client on the Chroma database folder ``path``, with the frameworks' settings
    (``IndexConnectionError`` when this process already opened it with other settings).

    Processes that create one new database at once race in chromadb's schema setup (one fails
    with "table collections already exists"), so a database that does not exist yet is
    created under an exclusive lock file in its folder; opening an existing one takes no lock."""
    with _creation_lock(Path(path)):
        return _persistent_client(path)


@contextlib.contextmanager
def _creation_lock(path: Path):
    """The lock of ``connect_path`` while ``path`` holds no database yet; none where the folder
    cannot be written (chromadb then says why it cannot create the database)."""
    with contextlib.ExitStack() as stack:
        if not (path / DATABASE_FILENAME).is_file():
            with contextlib.suppress(OSError):
                stack.enter_context(exclusive_lock(path / CREATE_LOCK_FILENAME))
        yield


def _persistent_client(path: Path):
    import chromadb

    try:
        return chromadb.PersistentClient(path=str(path), settings=_settings())
    except ValueError as exc:
        if "different settings" not in str(exc):
            raise
        raise IndexConnectionError(
            f"the Chroma database {path} is already open in this process with other settings; "
            "pass that client to TWNIndex.open(..., client=client)"
        ) from exc
    except Exception as exc:
        failure = chroma_failure(exc, Path(path).parent)
        if failure is None:
            raise
        forget_cached_system(str(path))
        raise failure from exc


def connect_url(chroma_url: str):
    """An ``HttpClient`` for ``chroma_url`` (``http[s]://host[:port]``), checked with a heartbeat
    (``IndexConnectionError`` when the server does not answer; ``ValueError`` for a malformed URL)."""
    import chromadb

    parsed = urlparse(chroma_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"--chroma-url must look like http://host:port, got {chroma_url!r}")
    ssl = parsed.scheme == "https"
    port = parsed.port or (443 if ssl else DEFAULT_CHROMA_PORT)
    try:
        client = chromadb.HttpClient(host=parsed.hostname, port=port, ssl=ssl, settings=_settings())
        client.heartbeat()
    except Exception as exc:  # connection refused, TLS, HTTP errors: one clear message
        raise IndexConnectionError(f"cannot reach the Chroma server at {chroma_url} ({exc})") from exc
    return client


@dataclass
class IndexConnection:
    """A client opened for an index: where the index keeps its images (``index_dir``), how
    messages name its store (``location``), why writes are refused (``read_only_reason``,
    ``None`` when the index may be written) and the temporary copy read instead of an embedded
    database that cannot be written (``copy``, ``twn_rag.index.read_only.snapshot``)."""

    client: Any
    index_dir: Path
    location: str
    read_only_reason: str | None = None
    copy: Path | None = None

    @classmethod
    def to_copy(cls, index_dir: Path, location: str, reason: str) -> IndexConnection:
        """A read-only connection to a temporary copy of ``index_dir``'s embedded database."""
        copy = snapshot(index_dir / CHROMA_SUBDIR)
        try:
            client = connect(copy.parent)
        except BaseException:
            shutil.rmtree(copy.parent, ignore_errors=True)
            raise
        return cls(client, index_dir, location, reason, copy)

    def release_when_closed(self, owner: object) -> Callable[[], Any] | None:
        """For a copy: a callable that closes the client and removes the copy, called at the
        latest when ``owner`` is garbage-collected; ``None`` when there is no copy."""
        return None if self.copy is None else remove_when_closed(owner, self.client, self.copy)

    def release(self) -> None:
        """Close the client and remove the copy now, if there is one (on an error while opening)."""
        if self.copy is not None:
            discard_copy(self.client, self.copy)
