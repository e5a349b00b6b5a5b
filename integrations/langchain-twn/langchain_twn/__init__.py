"""LangChain integration for Think-When-Needed (TWN) multimodal embeddings (``twn-rag``):
embeddings, a Chroma vector store that embeds pages and frames jointly, and a file loader."""

from langchain_twn.document_loaders import TWNLoader
from langchain_twn.embeddings import TWNEmbeddings
from langchain_twn.vectorstores import TWNChroma

__all__ = ["TWNChroma", "TWNEmbeddings", "TWNLoader"]
