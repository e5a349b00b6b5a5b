"""Chroma clients: embedded ``PersistentClient`` under the index directory, or a server by URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from twn_rag.index.errors import IndexConnectionError

CHROMA_SUBDIR = "chroma"
DEFAULT_CHROMA_PORT = 8000
# Vectors are L2-normalised, so cosine distance is the natural metric; score = 1 - distance.
COSINE_CONFIGURATION = {"hnsw": {"space": "cosine"}}


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


def connect(index_dir: Path, chroma_url: str | None = None):
    """An embedded client storing under ``index_dir/chroma``, or an ``HttpClient`` for
    ``chroma_url`` (``http[s]://host[:port]``). ``IndexConnectionError`` when the server does
    not answer, or when this process already opened the embedded database with other settings;
    ``ValueError`` for a malformed URL."""
    return connect_path(index_dir / CHROMA_SUBDIR) if chroma_url is None else connect_url(chroma_url)


def connect_path(path: Path):
    """An embedded client on the Chroma database folder ``path``, with the frameworks' settings
    (``IndexConnectionError`` when this process already opened it with other settings)."""
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
