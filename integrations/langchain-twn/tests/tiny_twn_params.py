"""What LangChain's standard embeddings suites (``langchain-tests``) need to build
``TWNEmbeddings``: the class, and parameters that load the session's offline tiny TWN."""

from __future__ import annotations

import pytest
from langchain_twn import TWNEmbeddings


class TinyTWNParams:
    """Points a standard suite at the session's tiny checkpoint."""

    @pytest.fixture(autouse=True)
    def _use_tiny_checkpoint(self, tiny_ckpt) -> None:
        self.checkpoint = tiny_ckpt

    @property
    def embeddings_class(self) -> type[TWNEmbeddings]:
        return TWNEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": str(self.checkpoint), "device": "cpu", "dtype": "float32"}
