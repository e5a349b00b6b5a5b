"""Chroma clients: embedded ``PersistentClient`` under the index directory, or a server by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from twn_rag.index.errors import IndexConnectionError

CHROMA_SUBDIR = "chroma"
DEFAULT_CHROMA_PORT = 8000
# Vectors are L2-normalised, so cosine distance is the natural metric; score = 1 - distance.
COSINE_CONFIGURATION = {"hnsw": {"space": "cosine"}}


def _settings():
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)  # no network beyond the store itself


def connect(index_dir: Path, chroma_url: str | None = None):
    """An embedded client storing under ``index_dir/chroma``, or an ``HttpClient`` for
    ``chroma_url`` (``http[s]://host[:port]``). ``IndexConnectionError`` when the server does
    not answer; ``ValueError`` for a malformed URL."""
    import chromadb

    if chroma_url is None:
        return chromadb.PersistentClient(path=str(index_dir / CHROMA_SUBDIR), settings=_settings())
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
