"""Indexes written before the one result-metadata schema: records with the keys ``TWNIndex``
used to write (``thought`` only when there was one, ``gate_score``, ``thought_tokens``,
``thought_used``), vectors and texts as a current index has them."""

from __future__ import annotations

from typing import Any

from twn_rag.result_metadata import (
    GATE_SCORE_KEY,
    RESULT_METADATA_KEYS,
    THOUGHT_KEY,
    THOUGHT_TOKENS_KEY,
    THOUGHT_USED_KEY,
)

LEGACY_KEYS = {"thought", "gate_score", "thought_tokens", "thought_used"}


def legacy_index_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` of a current record as ``TWNIndex`` wrote it before the change."""
    legacy = {key: value for key, value in metadata.items() if key not in RESULT_METADATA_KEYS}
    legacy["gate_score"] = metadata[GATE_SCORE_KEY]
    legacy["thought_tokens"] = metadata[THOUGHT_TOKENS_KEY]
    legacy["thought_used"] = metadata[THOUGHT_USED_KEY]
    if metadata[THOUGHT_USED_KEY]:
        legacy["thought"] = metadata[THOUGHT_KEY]
    return legacy


def copy_in_legacy_schema(source, target) -> dict[str, dict[str, Any]]:
    """Add every record of the collection ``source`` to the collection ``target`` as the old
    schema wrote it; returns the current metadata of each, by id."""
    stored = source.get(include=["metadatas", "embeddings", "documents"])
    target.add(
        ids=stored["ids"],
        embeddings=stored["embeddings"],
        documents=stored["documents"],
        metadatas=[legacy_index_metadata(m) for m in stored["metadatas"]],
    )
    return dict(zip(stored["ids"], stored["metadatas"]))
