"""Fixtures of the ``twn_rag.index`` tests."""

import pytest

from twn_rag import ReasoningBudget
from twn_rag.index import TWNIndex


@pytest.fixture
def index(tmp_path, embedder):
    """A new embedded index on the tiny TWN; its documents think at most 4 tokens."""
    return TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(max_thought_tokens=4))
