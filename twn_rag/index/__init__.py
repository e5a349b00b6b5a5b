"""A Chroma-backed multimodal index with a reasoning budget per role (``TWNIndex``)."""

from twn_rag.index.binding import CollectionAddress, create_collection
from twn_rag.index.errors import (
    IndexConnectionError,
    IndexDamagedError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexStoreError,
    IndexUnusableError,
)
from twn_rag.index.records import SearchHit
from twn_rag.index.report import IndexInfo, IndexingAborted, IndexReport, IngestTimings
from twn_rag.index.twn_index import DEFAULT_CHUNK_SIZE, DEFAULT_COLLECTION, TWNIndex

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_COLLECTION",
    "CollectionAddress",
    "IndexConnectionError",
    "IndexDamagedError",
    "IndexInfo",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
    "IndexReport",
    "IndexStoreError",
    "IndexUnusableError",
    "IndexingAborted",
    "IngestTimings",
    "SearchHit",
    "TWNIndex",
    "create_collection",
]
