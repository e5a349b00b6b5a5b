"""``TWNEmbedding``: a Think-When-Needed TWN model as a LlamaIndex ``MultiModalEmbedding``.

A thin adapter: every embedding is ``TWNEmbedder.encode`` with the query role and
``query_budget`` for queries, the document role and ``document_budget`` for texts, images
and nodes, or, bound to a Chroma collection (``for_chroma_collection``), the budgets the
collection stores. Used as a transformation (``IngestionPipeline``, ``transformations=[...]``),
it also records each node's thought, gate score and thought tokens in its metadata.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import llama_index.core.instrumentation as instrument
from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.schema import BaseNode, ImageNode, ImageType, MetadataMode

from twn_rag.budget import ReasoningBudget
from twn_rag.embedder import DEFAULT_BATCH_SIZE, EmbeddingResult, TWNEmbedder
from twn_rag.index.binding import BudgetBinding, CollectionAddress
from twn_rag.integration import (
    BUDGET_FIELDS,
    FIELD_SETTINGS,
    CollectionBudgetsMixin,
    as_float_lists,
    image_input,
    shared_embedder_settings,
    text_and_image_input,
    without_ledgers,
)
from twn_rag.result_metadata import result_metadata

dispatcher = instrument.get_dispatcher(__name__)


class TWNEmbedding(MultiModalEmbedding, CollectionBudgetsMixin):
    """TWN text, query and image embeddings for LlamaIndex.

    Pass ``model_name`` (hub id or local checkpoint) with ``base_model``/``device``/``dtype``
    to load a model, or ``embedder=`` an already-loaded ``TWNEmbedder`` to share it between
    several objects. Budgets left unset become the checkpoint's adaptive budget; a budget's
    ledger is updated in place by every call and saved by ``to_json``. Bound to a Chroma
    collection (``for_chroma_collection``, ``for_twn_index``; see ``CollectionBudgetsMixin``),
    the budgets are the collection's: ``to_json`` then saves the collection's address instead
    (``from_json`` binds again), and a pickled copy binds again when it is loaded. ``to_dict``
    (what ``IngestionPipeline`` keys its cache on) holds the budgets' limits, not their ledgers.
    Unknown options raise a validation error. Image inputs are paths or ``BytesIO``; a bad one
    raises ``twn_rag.InvalidInputError`` naming it.
    """

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(**FIELD_SETTINGS["model_name"])
    base_model: str | None = Field(**FIELD_SETTINGS["base_model"])
    device: str = Field(**FIELD_SETTINGS["device"])
    dtype: str = Field(**FIELD_SETTINGS["dtype"])
    query_budget: ReasoningBudget | None = Field(**FIELD_SETTINGS["query_budget"])
    document_budget: ReasoningBudget | None = Field(
        default=None, description="Reasoning budget for texts, images and nodes; None = the checkpoint's default."
    )
    embed_batch_size: int = Field(default=DEFAULT_BATCH_SIZE, gt=0, le=2048, description="Inputs per forward pass.")
    show_progress: bool = Field(**FIELD_SETTINGS["show_progress"])
    budget_collection: CollectionAddress | None = Field(**FIELD_SETTINGS["budget_collection"])

    _embedder: TWNEmbedder = PrivateAttr()
    _budget_binding: BudgetBinding | None = PrivateAttr(default=None)

    def __init__(self, *, embedder: TWNEmbedder | None = None, **data: Any) -> None:
        if embedder is not None:
            data.update(
                shared_embedder_settings(embedder, data.get("model_name"), data.get("device"), data.get("dtype"))
            )
        super().__init__(**data)
        self._embedder = embedder or TWNEmbedder.from_pretrained(
            self.model_name, base_model=self.base_model, device=self.device, dtype=self.dtype
        )
        self._settle_budgets()

    @classmethod
    def class_name(cls) -> str:
        return "TWNEmbedding"

    @property
    def embedder(self) -> TWNEmbedder:
        """The loaded model, to share with other objects (``embedder=``)."""
        return self._embedder

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """The settings that decide the vectors, and so ``IngestionPipeline``'s cache key: the
        budgets' limits without their ledgers (for a bound object, the limits stored now)."""
        if self._budget_binding is not None:
            self.budget("query")  # refreshes both budgets from the collection
        return without_ledgers(super().to_dict(**kwargs))

    def to_json(self, **kwargs: Any) -> str:
        """What ``from_json`` needs to rebuild this object (not the weights): the budgets with
        their ledgers, or for a bound object the collection's address and no budgets (they live
        in the collection)."""
        data = super().to_dict(**kwargs)
        return json.dumps(self._without_bound_budgets(data))

    def __getstate__(self) -> dict[str, Any]:
        # LlamaIndex unpickles by calling __init__ with the fields: a bound object's budgets must
        # not come back as limits to store, so it carries only the address.
        state = super().__getstate__()
        state["__dict__"] = self._without_bound_budgets(dict(state["__dict__"]))
        return state

    def _without_bound_budgets(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.budget_collection is not None:
            data.update(dict.fromkeys(BUDGET_FIELDS.values()))
        return data

    def _encode(
        self, inputs: Sequence[Any], role: str, names: Sequence[str] | None = None, show_progress: bool | None = None
    ) -> list[EmbeddingResult]:
        return self._encode_within_budget(
            inputs,
            role,
            names=names,
            batch_size=self.embed_batch_size,
            show_progress=self.show_progress if show_progress is None else show_progress,
        )

    # -- queries --------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return as_float_lists(self._encode([query], "query"))[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    # -- texts (documents) --------------------------------------------------------------------
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return as_float_lists(self._encode(texts, "document"))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # -- images (documents) -------------------------------------------------------------------
    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embeddings([img_file_path])[0]

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return as_float_lists(self._encode([image_input(source) for source in img_file_paths], "document"))

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)

    # -- as a transformation --------------------------------------------------------------------
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed ``nodes`` as documents (an ``ImageNode`` with an image as that image plus its
        text) and record each node's thought, gate score and thought tokens in its metadata
        under ``twn_rag.result_metadata.RESULT_METADATA_KEYS``, excluded from the embed and LLM text."""
        if not nodes:
            return nodes
        chunks = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        inputs = [_node_input(node, chunk) for node, chunk in zip(nodes, chunks)]
        model_dict = self.to_payload()
        dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
        with self.callback_manager.event(CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: model_dict}) as event:
            results = self._encode(
                inputs, "document", [f"node {node.node_id}" for node in nodes], kwargs.get("show_progress")
            )
            embeddings = as_float_lists(results)
            event.on_end(payload={EventPayload.CHUNKS: chunks, EventPayload.EMBEDDINGS: embeddings})
        dispatcher.event(EmbeddingEndEvent(chunks=chunks, embeddings=embeddings))
        for node, embedding, result in zip(nodes, embeddings, results):
            node.embedding = embedding
            _record_result(node, result)
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)


def _node_input(node: BaseNode, embed_text: str) -> Any:
    """The ``encode`` input for a node: its embed text, plus its image for an image node."""
    has_image = isinstance(node, ImageNode) and (node.image or node.image_path or node.image_url)
    return text_and_image_input(embed_text, node.resolve_image() if has_image else None)


def _record_result(node: BaseNode, result: EmbeddingResult) -> None:
    """Store the result's scalars in ``node.metadata``, hidden from the embed and LLM text.
    New key lists are assigned because node parsers share one list between sibling nodes."""
    recorded = result_metadata(result)  # the result keys, and the text-truncation keys when cut
    node.metadata.update(recorded)
    missing_embed = [key for key in recorded if key not in node.excluded_embed_metadata_keys]
    missing_llm = [key for key in recorded if key not in node.excluded_llm_metadata_keys]
    node.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, *missing_embed]
    node.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, *missing_llm]
