"""``TWNEmbeddings``: a Think-When-Needed TWN model as a LangChain ``Embeddings``.

A thin adapter: ``embed_query`` and ``embed_query_image`` are ``TWNEmbedder.encode`` with the
query role and ``query_budget``; ``embed_documents``, ``embed_image`` and ``encode_documents``
(text and image jointly) use the document role and ``document_budget``, or, bound to a Chroma
collection (``for_chroma_collection``), the budgets the collection stores. Every call goes through
one method (``_encode``), so the budgets apply to all of them. The async forms are LangChain's
defaults, which run in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer, model_validator

from twn_rag.budget import ReasoningBudget
from twn_rag.embedder import DEFAULT_BATCH_SIZE, EmbeddingResult, TWNEmbedder
from twn_rag.index.binding import BudgetBinding, CollectionAddress
from twn_rag.integration import (
    FIELD_SETTINGS,
    CollectionBudgetsMixin,
    as_float_lists,
    image_input,
    shared_embedder_settings,
    text_and_image_input,
)
from twn_rag.result_metadata import result_metadata


class TWNEmbeddings(BaseModel, Embeddings, CollectionBudgetsMixin):
    """TWN text and image embeddings for LangChain.

    Pass ``model_name`` (hub id or local checkpoint) with ``base_model``/``device``/``dtype``
    to load a model, or ``embedder=`` an already-loaded ``TWNEmbedder`` to share it. Budgets
    left unset become the checkpoint's adaptive budget; a budget's ledger is updated in place
    by every call. Bound to a Chroma collection (``for_chroma_collection``, ``for_twn_index``,
    ``TWNChroma(..., bind_budget=True)``; see ``CollectionBudgetsMixin``) the budgets are the
    collection's: ``model_dump`` then holds the collection's address and no budgets, and a
    pickled copy re-opens the collection. Unknown options raise a validation error.
    ``last_results`` holds the thoughts and gate scores of the last documents or images embedded.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = Field(**FIELD_SETTINGS["model_name"])
    base_model: str | None = Field(**FIELD_SETTINGS["base_model"])
    device: str = Field(**FIELD_SETTINGS["device"])
    dtype: str = Field(**FIELD_SETTINGS["dtype"])
    query_budget: ReasoningBudget | None = Field(**FIELD_SETTINGS["query_budget"])
    document_budget: ReasoningBudget | None = Field(
        default=None, description="Reasoning budget for documents and images; None = the checkpoint's default."
    )
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, gt=0, description="Inputs per forward pass.")
    show_progress: bool = Field(**FIELD_SETTINGS["show_progress"])
    embedder: TWNEmbedder | None = Field(
        default=None, exclude=True, repr=False, description="An already-loaded TWNEmbedder to share."
    )
    budget_collection: CollectionAddress | None = Field(**FIELD_SETTINGS["budget_collection"])

    _last_results: list[EmbeddingResult] = PrivateAttr(default_factory=list)
    _budget_binding: BudgetBinding | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _describe_shared_embedder(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("embedder") is not None:
            settings = shared_embedder_settings(
                data["embedder"], data.get("model_name"), data.get("device"), data.get("dtype")
            )
            data = {**data, **settings}
        return data

    @model_validator(mode="after")
    def _load_embedder_and_budgets(self) -> TWNEmbeddings:
        if self.embedder is None:
            self.embedder = TWNEmbedder.from_pretrained(
                self.model_name, base_model=self.base_model, device=self.device, dtype=self.dtype
            )
        self._settle_budgets()
        return self

    @field_serializer("query_budget", "document_budget")
    def _budget_unless_bound(self, budget: ReasoningBudget | None) -> ReasoningBudget | None:
        """A bound object's budgets live in its collection: a dump would hold a stale copy."""
        return None if self.budget_collection is not None else budget

    def _encode(self, inputs: Sequence[Any], role: str) -> list[EmbeddingResult]:
        return self._encode_within_budget(inputs, role, batch_size=self.batch_size, show_progress=self.show_progress)

    def encode_documents(self, texts: Sequence[str], images: Sequence[Any] | None = None) -> list[EmbeddingResult]:
        """Embed documents: ``texts[i]`` alone, or with ``images[i]`` (a path, bytes, a
        ``BytesIO`` or a PIL image; ``None`` for none) as one joint input. Returns the full
        results (vector, thought, gate score, thought tokens), which also become ``last_results``."""
        images = [None] * len(texts) if images is None else list(images)
        if len(images) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(images)} images; pass one image (or None) per text")
        inputs = [text_and_image_input(text, image) for text, image in zip(texts, images)]
        self._last_results = self._encode(inputs, "document")
        return list(self._last_results)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` as documents; their results become ``last_results``."""
        return as_float_lists(self.encode_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed ``text`` as a query (``last_results`` is left alone)."""
        return as_float_lists(self._encode([text], "query"))[0]

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed image files (paths) as documents; their results become ``last_results``.

        The name and the ``uris`` argument are what ``langchain_chroma`` (``uris=``) and
        chromadb (positionally) look for."""
        return as_float_lists(self.encode_documents([""] * len(uris), uris))

    def embed_query_image(self, uri: str) -> list[float]:
        """Embed an image file (path) as a query, under the query role and ``query_budget``
        (``last_results`` is left alone): what ``TWNChroma.similarity_search_by_image`` uses."""
        return as_float_lists(self._encode([image_input(uri)], "query"))[0]

    @property
    def last_results(self) -> list[EmbeddingResult]:
        """Per input of the last ``embed_documents`` / ``embed_image`` / ``encode_documents``
        call: ``.thought`` (``None`` when it did not think), ``.gate_score``, ``.thought_tokens``,
        ``.vector``."""
        return list(self._last_results)

    @property
    def last_metadata(self) -> list[dict[str, str | float | int | bool]]:
        """``last_results`` as scalar record metadata (``twn_thought``, ``twn_gate_score``,
        ``twn_thought_tokens``, ``twn_thought_used``), ready to store next to the vectors."""
        return [result_metadata(result) for result in self._last_results]
