"""Conversions of ``DocumentItem``s to LlamaIndex nodes and documents, and LangChain documents.

The frameworks are imported lazily: each is needed only by the conversion that targets it.
Image items carry the image *path* (``ImageNode.image_path``, ``metadata["image_path"]``),
never a base64 copy, so nodes stay small; call ``DocumentItem.save_image`` (or load with
``image_dir``) first for rendered pages and frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twn_rag.loaders.items import DocumentItem
from twn_rag.result_metadata import (
    QUERY_RESULT_METADATA_KEYS,
    QUERY_TEXT_TRUNCATION_KEYS,
    RESULT_METADATA_KEYS,
    TEXT_TRUNCATION_KEYS,
)

# Bookkeeping keys an LLM or a text embedding model has no use for: the loaders' and the
# index's (``last_in_file``, ``twn_writer``, ``twn_final``...), and how the item and the query were embedded.
TECHNICAL_METADATA_KEYS = (
    "content_hash",
    "image_path",
    "source_type",
    "page_width_pt",
    "page_height_pt",
    "page_count",
    "frame_index",
    "width",
    "height",
    "last_in_file",
    "twn_writer",  # twn_rag.index.records.WRITER_KEY: which store wrote the record
    "twn_final",  # twn_rag.index.records.FINAL_KEY: whether the record awaits the global selection
    "twn_think_writer",  # twn_rag.index.records.THINK_WRITER_KEY: which store wrote its thought
    *RESULT_METADATA_KEYS,
    *TEXT_TRUNCATION_KEYS,
    *QUERY_RESULT_METADATA_KEYS,
    *QUERY_TEXT_TRUNCATION_KEYS,
)
# Kept for the LLM (it can cite the file) but not embedded: the absolute path says where the
# file sits on this machine, and the same page must embed the same wherever it is loaded from
# (``file_path`` is the same path as LlamaIndex's ``SimpleDirectoryReader`` records it).
LOCATION_METADATA_KEYS = ("source", "file_path")


def _require_image_path(item: DocumentItem) -> str | None:
    has_pixels = item.image is not None or bool(item.frames)
    if has_pixels and item.image_path is None:
        raise ValueError(f"item {item.id} has an unsaved image; call item.save_image(directory) first")
    return item.image_path


def _metadata(item: DocumentItem) -> dict[str, Any]:
    return {**item.metadata, "modality": item.modality}


def _import_llama_index_schema():
    try:
        from llama_index.core import schema
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LlamaIndex conversions need llama-index-core: pip install llama-index-core") from exc
    return schema


def _llama_index_fields(node_id: str, text: str, metadata: dict[str, Any], image_path: str | None) -> dict[str, Any]:
    """What a LlamaIndex node or document holds: id, text, metadata, the keys hidden from the
    embed and LLM text, the ``source`` file as ``ref_doc_id``, and the image path (``None``: text)."""
    schema = _import_llama_index_schema()
    excluded = [key for key in TECHNICAL_METADATA_KEYS if key in metadata]
    location = [key for key in LOCATION_METADATA_KEYS if key in metadata]
    fields: dict[str, Any] = dict(
        id_=node_id,
        text=text,
        metadata=metadata,
        excluded_embed_metadata_keys=[*excluded, *location],
        excluded_llm_metadata_keys=excluded,
    )
    if "source" in metadata:  # so that index.delete_ref_doc(source) removes every page of the file
        source = schema.RelatedNodeInfo(node_id=str(metadata["source"]))
        fields["relationships"] = {schema.NodeRelationship.SOURCE: source}
    if image_path is not None:
        fields["image_path"] = image_path
        fields["image_mimetype"] = "image/jpeg" if image_path.lower().endswith((".jpg", ".jpeg")) else None
    return fields


def llama_index_node(node_id: str, text: str, metadata: dict[str, Any], image_path: str | None = None):
    """A ``TextNode`` (``image_path`` ``None``), else an ``ImageNode`` with ``image_path`` set,
    holding ``metadata`` with the bookkeeping keys (``TECHNICAL_METADATA_KEYS``) hidden from the
    embed and LLM text and the paths (``LOCATION_METADATA_KEYS``) from the embed text; its
    ``ref_doc_id`` is ``metadata["source"]``. What every twn-rag node is built with (the loaders'
    items, the reader's documents' nodes, a ``TWNIndex`` retriever's hits)."""
    schema = _import_llama_index_schema()
    fields = _llama_index_fields(node_id, text, metadata, image_path)
    return schema.ImageNode(**fields) if image_path is not None else schema.TextNode(**fields)


def to_llama_index_node(item: DocumentItem):
    """``llama_index_node`` of ``item``: a ``TextNode`` for a text-only item, else an
    ``ImageNode`` with ``image_path`` set; its ``ref_doc_id`` is the source file.

    The embed text holds the item's text and its descriptive metadata (file name, page or
    timestamp, modality), never its absolute ``source`` path, so a file embeds the same
    wherever it is stored; the LLM text keeps ``source``."""
    return llama_index_node(item.id, item.text, _metadata(item), _require_image_path(item))


def to_llama_index_document(item: DocumentItem, extra_metadata: dict[str, Any] | None = None):
    """What a LlamaIndex reader returns for ``item``: an ``ImageDocument`` (a plain ``Document``
    for text) with the fields of ``to_llama_index_node`` (``extra_metadata`` merged over the
    item's, as LlamaIndex readers merge ``extra_info``). Node parsers turn an ``ImageDocument``
    into ``ImageNode``s that keep its image path, metadata exclusions and ``ref_doc_id``."""
    schema = _import_llama_index_schema()
    image_path = _require_image_path(item)
    fields = _llama_index_fields(item.id, item.text, {**_metadata(item), **(extra_metadata or {})}, image_path)
    return schema.ImageDocument(**fields) if image_path is not None else schema.Document(**fields)


def to_llama_index_nodes(items: Iterable[DocumentItem]) -> list:
    return [to_llama_index_node(item) for item in items]


def langchain_document(doc_id: str, text: str, metadata: dict[str, Any], image_path: str | None = None):
    """A LangChain ``Document``: ``text`` as ``page_content``, ``doc_id`` as ``id``, and the
    image path (when there is one) in ``metadata["image_path"]``."""
    try:
        from langchain_core.documents import Document
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LangChain conversions need langchain-core: pip install langchain-core") from exc

    if image_path is not None:
        metadata = {**metadata, "image_path": image_path}
    return Document(id=doc_id, page_content=text, metadata=metadata)


def to_langchain_document(item: DocumentItem):
    """``langchain_document`` of ``item``: its text, its id, its image path (when there is one)."""
    return langchain_document(item.id, item.text, _metadata(item), _require_image_path(item))


def to_langchain_documents(items: Iterable[DocumentItem]) -> list:
    return [to_langchain_document(item) for item in items]
