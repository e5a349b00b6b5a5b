"""LangChain's standard embeddings suites (``langchain-tests``) run against ``TWNEmbeddings``
loading the offline tiny TWN from its checkpoint path."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from langchain_twn import TWNEmbeddings


class TinyTWNParams:
    """Points the standard suites at the session's tiny checkpoint."""

    @pytest.fixture(autouse=True)
    def _use_tiny_checkpoint(self, tiny_ckpt) -> None:
        self.checkpoint = tiny_ckpt

    @property
    def embeddings_class(self) -> type[TWNEmbeddings]:
        return TWNEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": str(self.checkpoint), "device": "cpu", "dtype": "float32"}


class TestTWNEmbeddingsStandardUnit(TinyTWNParams, EmbeddingsUnitTests):
    pass


class TestTWNEmbeddingsStandardIntegration(TinyTWNParams, EmbeddingsIntegrationTests):
    pass
