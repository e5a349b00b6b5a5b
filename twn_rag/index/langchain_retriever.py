"""``TWNLangChainRetriever``: a LangChain retriever over a ``TWNIndex`` (what
``TWNIndex.as_langchain_retriever`` returns), so a CLI-built index serves LCEL chains as it is.

Hits become ``Document``s through ``twn_rag.loaders.convert.langchain_document``, the builder
of ``TWNLoader``'s documents.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, Field
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("TWNIndex.as_langchain_retriever needs langchain-core: pip install langchain-core") from exc

from twn_rag.index.twn_index import TWNIndex
from twn_rag.loaders.convert import langchain_document

# The metadata key of a document's score (the retriever protocol has no other place for it).
SCORE_KEY = "score"


class TWNLangChainRetriever(BaseRetriever):
    """Retrieves the ``k`` items of ``index`` closest to a query text, with the index's model
    and query budget (its spend recorded), filtered by the Chroma ``where``.

    Each ``Document`` has the record id as ``id``, the item's text as ``page_content``, and
    metadata: the record's (``source``, ``file_name``, ``page`` or ``timestamp``, ``modality``,
    the item's ``twn_thought``...) with the absolute ``image_path`` of the page or frame, its
    cosine similarity under ``score`` (what ``twn-rag search`` prints), and the query's own
    thought and gate score (``twn_query_thought``, ``twn_query_gate_score``...).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: TWNIndex
    k: int = Field(default=5, gt=0, description="Number of documents to return.")
    where: dict[str, Any] | None = Field(default=None, description="A Chroma metadata filter.")

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits, asked = self.index.search_with_query(query, k=self.k, where=self.where)
        return [
            langchain_document(hit.id, hit.text, {**hit.metadata_with_query(asked), SCORE_KEY: hit.score})
            for hit in hits
        ]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return await asyncio.to_thread(self._get_relevant_documents, query, run_manager=run_manager.get_sync())
