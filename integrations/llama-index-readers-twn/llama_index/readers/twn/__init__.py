"""LlamaIndex reader for PDFs, videos and images with page and frame images (``twn-rag``)."""

from llama_index.readers.twn.base import TWNReader

__all__ = ["TWNReader"]
