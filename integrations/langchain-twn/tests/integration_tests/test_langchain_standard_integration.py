"""LangChain's standard embeddings integration suite (``langchain-tests``) against
``TWNEmbeddings`` loading the offline tiny TWN from its checkpoint path."""

from __future__ import annotations

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from tiny_twn_params import TinyTWNParams


class TestTWNEmbeddingsStandardIntegration(TinyTWNParams, EmbeddingsIntegrationTests):
    pass
