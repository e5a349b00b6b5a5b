"""LlamaIndex embeddings integration for Think-When-Needed (TWN) models (``twn-rag``)."""

from llama_index.embeddings.twn.base import TWNEmbedding

__all__ = ["TWNEmbedding"]
