"""Loaders: PDFs (pypdfium2), videos (PyAV) and image files into framework-neutral
``DocumentItem``s, with conversions to LlamaIndex nodes and LangChain documents."""

from twn_rag.loaders.convert import (
    to_langchain_document,
    to_langchain_documents,
    to_llama_index_node,
    to_llama_index_nodes,
)
from twn_rag.loaders.dispatch import iter_file_items, load_items
from twn_rag.loaders.files import Discovery, FileRef, discover_files, file_kind
from twn_rag.loaders.items import DocumentItem, FileFailure, LoadError
from twn_rag.loaders.settings import LoaderSettings

__all__ = [
    "Discovery",
    "DocumentItem",
    "FileFailure",
    "FileRef",
    "LoadError",
    "LoaderSettings",
    "discover_files",
    "file_kind",
    "iter_file_items",
    "load_items",
    "to_langchain_document",
    "to_langchain_documents",
    "to_llama_index_node",
    "to_llama_index_nodes",
]
