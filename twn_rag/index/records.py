"""Chroma records of embedded items, chunked writes, and search hits read back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twn_rag.embedder import EmbeddingResult
from twn_rag.loaders.items import DocumentItem, MetadataValue
from twn_rag.result_metadata import (
    ThoughtOutcome,
    current_metadata,
    query_result_metadata,
    recorded_result,
    result_metadata,
)

# Set on a file's final item: its presence means every item of the file is stored, because
# items are written in order.
LAST_IN_FILE_KEY = "last_in_file"
# The store that wrote a record (a token per chunk): how a writer tells the records it stored
# new from those another writer stored first, and how an interrupted store is counted later.
WRITER_KEY = "twn_writer"
# False on a record embedded without thinking that awaits the global selection (``add``'s pass
# 1); True once it is final (thought and re-embedded, or left as it is). Records without the
# key were written final (by an earlier version, or by a route that selects as it goes).
FINAL_KEY = "twn_final"
# The store that re-embedded a record with its thought (pass 3): how its thought is counted once.
THINK_WRITER_KEY = "twn_think_writer"


def record_metadata(
    item: DocumentItem, result: EmbeddingResult, index_dir: Path | None = None
) -> dict[str, MetadataValue]:
    """Scalar metadata for Chroma: the item's own, its modality and image path, and what the
    embedder decided (``twn_rag.result_metadata.result_metadata``: thought, gate score, thought
    tokens, whether it thought). Keys without a value are left out (Chroma rejects ``None``).
    An image under ``index_dir`` is recorded relative to it, so the index directory can be moved."""
    metadata: dict[str, MetadataValue] = {**item.metadata, "modality": item.modality, **result_metadata(result)}
    if item.image_path is not None:
        metadata["image_path"] = _relative_to(Path(item.image_path), index_dir)
    return metadata


def _relative_to(path: Path, base: Path | None) -> str:
    if base is not None and path.is_absolute() and path.is_relative_to(base):
        return path.relative_to(base).as_posix()
    return str(path)


def resolve_image_path(recorded: str | None, index_dir: Path) -> str | None:
    """The absolute path of a recorded ``image_path`` (relative ones live under ``index_dir``)."""
    if recorded is None:
        return None
    path = Path(recorded)
    return str(path if path.is_absolute() else index_dir / path)


def add_chunked(
    collection,
    *,
    ids: Sequence[str],
    embeddings: np.ndarray,
    metadatas: Sequence[dict[str, Any]],
    documents: Sequence[str],
    max_batch_size: int,
) -> int:
    """Add in order, in slices of at most ``max_batch_size`` (Chroma rejects larger adds).
    Chroma ignores ids it already holds, so writing the same items again never duplicates
    them (and, unlike ``upsert``, costs almost nothing). Returns the number of writes made."""
    writes = 0
    for start in range(0, len(ids), max_batch_size):
        stop = start + max_batch_size
        collection.add(
            ids=list(ids[start:stop]),
            embeddings=embeddings[start:stop],
            metadatas=list(metadatas[start:stop]),
            documents=list(documents[start:stop]),
        )
        writes += 1
    return writes


def update_chunked(
    collection,
    *,
    ids: Sequence[str],
    metadatas: Sequence[dict[str, Any]],
    embeddings: np.ndarray | None,
    max_batch_size: int,
) -> None:
    """Replace the metadata (and, when given, the vectors) of stored records, in slices of at
    most ``max_batch_size``. ``metadatas`` are whole: keys left out are not guaranteed to stay."""
    for start in range(0, len(ids), max_batch_size):
        stop = start + max_batch_size
        collection.update(
            ids=list(ids[start:stop]),
            metadatas=list(metadatas[start:stop]),
            **({} if embeddings is None else {"embeddings": embeddings[start:stop]}),
        )


@dataclass
class SearchHit:
    """One search result. ``score`` is the cosine similarity (higher is closer); ``thought`` is
    ``None`` when the item did not think; ``metadata`` is the record's, its result keys in the
    current schema (``twn_rag.result_metadata``) whatever schema it was written in."""

    id: str
    score: float
    source: str
    modality: str
    page: int | None = None
    timestamp: float | None = None
    thought: str | None = None
    image_path: str | None = None
    text: str = ""
    gate_score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """``page=3``, ``t=12.50s`` or ``""``: where in the source the hit is."""
        if self.page is not None:
            return f"page={self.page}"
        if self.timestamp is not None:
            return f"t={self.timestamp:.2f}s"
        return ""

    @property
    def image_missing(self) -> bool:
        """Whether the hit names an image file that does not exist (its index's ``images/`` is
        damaged, or an indexed image file was removed: ``twn-rag check`` says which)."""
        return self.image_path is not None and not Path(self.image_path).exists()

    def metadata_with_query(self, query: ThoughtOutcome) -> dict[str, Any]:
        """What a framework retriever returns with this hit: the record's metadata (absolute
        ``image_path``) and how the ``query`` was embedded (``QUERY_RESULT_METADATA_KEYS``),
        sorted by key (Chroma returns them in any order; prompts built from them stay the same)."""
        metadata = {**self.metadata, **query_result_metadata(query)}
        if self.image_path is not None:
            metadata["image_path"] = self.image_path
        return dict(sorted(metadata.items()))


def hits_from_query(result: dict[str, Any], index_dir: Path) -> list[SearchHit]:
    """``SearchHit``s from the first query of a Chroma ``query`` result (image paths made
    absolute against ``index_dir``; records written before the current result schema read too)."""
    ids = result["ids"][0]
    distances = result["distances"][0]
    metadatas = result["metadatas"][0]
    documents = (result.get("documents") or [[""] * len(ids)])[0]
    hits = []
    for hit_id, distance, metadata, document in zip(ids, distances, metadatas, documents):
        metadata = current_metadata(metadata)
        recorded = recorded_result(metadata)
        page = metadata.get("page")
        timestamp = metadata.get("timestamp")
        hits.append(
            SearchHit(
                id=hit_id,
                score=1.0 - float(distance),
                source=str(metadata.get("source", "")),
                modality=str(metadata.get("modality", "")),
                page=int(page) if page is not None else None,
                timestamp=float(timestamp) if timestamp is not None else None,
                thought=recorded.thought if recorded is not None else None,
                image_path=resolve_image_path(metadata.get("image_path"), index_dir),
                text=document or "",
                gate_score=recorded.gate_score if recorded is not None else None,
                metadata=metadata,
            )
        )
    return hits


def reachable_ids(collection, dimension: int) -> set[str]:
    """The ids vector search can return: one query asking for every record (a healthy HNSW index
    returns them all; one that lost records returns only those it holds)."""
    count = collection.count()
    if count == 0:
        return set()
    probe = np.zeros((1, dimension), dtype=np.float32)
    probe[0, 0] = 1.0
    return set(collection.query(query_embeddings=probe, n_results=count, include=[])["ids"][0])
