"""``TWNLlamaIndexRetriever``: a LlamaIndex retriever over a ``TWNIndex`` (what
``TWNIndex.as_llama_index_retriever`` returns), so a CLI-built index serves query engines,
chat engines and agents as it is.

Hits become nodes through ``twn_rag.loaders.convert.llama_index_node``, the builder of the
loaders' and the reader's nodes, so all of them hide the same bookkeeping keys from the LLM.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("TWNIndex.as_llama_index_retriever needs llama-index-core: pip install llama-index-core") from exc

from twn_rag.loaders.convert import llama_index_node

if TYPE_CHECKING:
    from twn_rag.index.twn_index import TWNIndex


class TWNLlamaIndexRetriever(BaseRetriever):
    """Retrieves the ``similarity_top_k`` items of ``index`` closest to a query, with the
    index's model and query budget (its spend recorded), filtered by the Chroma ``where``.

    The query is ``QueryBundle.query_str`` and/or ``QueryBundle.image_path``, embedded together
    by TWN with its own thought (``custom_embedding_strs`` and a given ``embedding`` are not
    used: the embedding must come from the index's model, with the query role).

    Each result is a ``NodeWithScore`` whose score is the cosine similarity (what ``twn-rag
    search`` prints) and whose node is an ``ImageNode`` with the absolute ``image_path`` of
    the page or frame (a ``TextNode`` for a text-only item), id the record id, ``ref_doc_id``
    the source file, and metadata: the record's (``source``, ``file_name``, ``page`` or
    ``timestamp``, ``modality``, the item's ``twn_thought``...) and the query's own thought and
    gate score (``twn_query_thought``, ``twn_query_gate_score``...). Only the descriptive keys
    reach the LLM and embed text (``twn_rag.loaders.convert.TECHNICAL_METADATA_KEYS`` do not).
    """

    def __init__(
        self, index: TWNIndex, similarity_top_k: int = 5, where: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {similarity_top_k}")
        super().__init__(**kwargs)
        self.index = index
        self.similarity_top_k = similarity_top_k
        self.where = where

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits, query = self.index.search_with_query(
            query_bundle.query_str or None, image=query_bundle.image_path, k=self.similarity_top_k, where=self.where
        )
        return [
            NodeWithScore(
                node=llama_index_node(hit.id, hit.text, hit.metadata_with_query(query), hit.image_path),
                score=hit.score,
            )
            for hit in hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
