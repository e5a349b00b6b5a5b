"""LangChain's standard vector store suite (``langchain-tests``) against ``TWNChroma`` on an
embedded Chroma, with the suite's own embeddings: with an embedding that is not a
``TWNEmbeddings`` the store must behave exactly as ``Chroma``."""

from __future__ import annotations

from collections.abc import Iterator

import chromadb
import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from langchain_twn import TWNChroma


class TestTWNChromaStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[TWNChroma]:
        """An empty store in its own embedded Chroma."""
        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
        store = TWNChroma(collection_name="standard", embedding_function=self.get_embeddings(), client=client)
        try:
            yield store
        finally:
            store.delete_collection()
