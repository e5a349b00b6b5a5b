"""A Chroma-backed multimodal index with a reasoning budget per role (``TWNIndex``)."""

from twn_rag.index.binding import CollectionAddress, create_collection
from twn_rag.index.errors import IndexConnectionError, IndexMismatchError, IndexNotFoundError, IndexStoreError
from twn_rag.index.records import SearchHit
from twn_rag.index.report import IndexInfo, IndexingAborted, IndexReport, IngestTimings
from twn_rag.index.twn_index import DEFAULT_CHUNK_SIZE, DEFAULT_COLLECTION, TWNIndex

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_COLLECTION",
    "CollectionAddress",
    "IndexConnectionError",
    "IndexInfo",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexReport",
    "IndexStoreError",
    "IndexingAborted",
    "IngestTimings",
    "SearchHit",
    "TWNIndex",
    "create_collection",
]
