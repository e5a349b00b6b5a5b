"""One loaded TWN shared between LangChain and LlamaIndex objects (both integration packages)."""

from __future__ import annotations

import pytest
from langchain_twn import TWNEmbeddings
from llama_index.embeddings.twn import TWNEmbedding


def test_one_loaded_model_shared_between_objects_and_frameworks(embedder, tiny_ckpt):
    first = TWNEmbeddings(model_name=str(tiny_ckpt), device="cpu", dtype="float32")
    second = TWNEmbeddings(embedder=first.embedder)
    llama = TWNEmbedding(embedder=first.embedder)
    assert second.embedder is first.embedder is llama.embedder
    assert second.model_dump() == first.model_dump()
    assert "embedder" not in first.model_dump()
    with pytest.raises(ValueError, match="does not match"):
        TWNEmbeddings(embedder=embedder, model_name="zhanglx/TWN-8B")
