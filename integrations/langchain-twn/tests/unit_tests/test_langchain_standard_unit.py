"""LangChain's standard embeddings unit suite (``langchain-tests``) against ``TWNEmbeddings``."""

from __future__ import annotations

from langchain_tests.unit_tests import EmbeddingsUnitTests
from tiny_twn_params import TinyTWNParams


class TestTWNEmbeddingsStandardUnit(TinyTWNParams, EmbeddingsUnitTests):
    pass
