"""LangChain integration for Think-When-Needed (TWN) multimodal embeddings (``twn-rag``)."""

from langchain_twn.embeddings import TWNEmbeddings

__all__ = ["TWNEmbeddings"]
