"""``TWNChroma``: ``langchain_chroma.Chroma`` that keeps TWN's semantics when its embedding is a
``TWNEmbeddings``, and is plain ``Chroma`` with any other embedding.

With a ``TWNEmbeddings`` the store
- embeds a document whose metadata has an ``image_path`` (what ``twn_rag.loaders`` write for
  pages and frames) from its text and that image jointly, as one input, so frames without text
  can be stored;
- embeds query texts and query images with the query role and query budget
  (``similarity_search_by_image`` goes through ``TWNEmbeddings.embed_query_image``);
- creates its collection in cosine space (unless a ``collection_configuration``, or an
  ``hnsw:space`` in ``collection_metadata``, chooses another);
- gives relevance scores in 0..1: the cosine similarity of the (L2-normalised) vectors, which is
  ``1 - distance`` in cosine space, with negative similarities clipped to 0;
- records each document's thought, gate score and thought tokens in its record metadata
  (``twn_rag.result_metadata.RESULT_METADATA_KEYS``);
- with ``bind_budget=True``, keeps the budgets in its collection: the ``TWNEmbeddings`` is bound
  to the collection (``TWNEmbeddings.bind_budgets``), so every embedding the store causes selects
  within the budget the collection stores for its role and commits its spend there, shared with
  every other route into the collection (``TWNIndex``, the CLI, LlamaIndex, other processes). A
  collection without stored budgets takes the embeddings' limits; one with them keeps its own.

Every TWN embedding goes through a ``TWNEmbeddings`` method, never the raw embedder, so the
embeddings' budgets decide and record all thinking the store causes.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_chroma import Chroma
from langchain_chroma.vectorstores import DEFAULT_K
from langchain_core.documents import Document

from langchain_twn.embeddings import TWNEmbeddings
from twn_rag.embedder import EmbeddingResult
from twn_rag.index.binding import CollectionAddress
from twn_rag.index.client import COSINE_CONFIGURATION
from twn_rag.integration import BUDGET_FIELDS, as_float_lists
from twn_rag.result_metadata import result_metadata

# The metadata key under which twn_rag.loaders.to_langchain_document puts a page or frame image.
IMAGE_PATH_KEY = "image_path"

_CHROMA_INIT = inspect.signature(Chroma.__init__)
_BIND_BUDGET = inspect.Parameter("bind_budget", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
# Chroma's older way to choose the space, in the collection metadata; a configuration would override it.
_LEGACY_SPACE_KEY = "hnsw:space"


def cosine_relevance(distance: float, space: str = "cosine") -> float:
    """The cosine similarity of two unit vectors from Chroma's ``distance`` between them in
    ``space`` (``cosine``: 1 - cos; ``ip``: 1 - dot; ``l2``: squared distance, 2 - 2 cos),
    clipped to 0..1."""
    similarity = 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance
    return min(1.0, max(0.0, similarity))


class TWNChroma(Chroma):
    """A Chroma vector store for TWN embeddings; the constructor and class methods are
    ``Chroma``'s (collection name, ``persist_directory`` or ``client``, ``embedding_function``...),
    plus ``bind_budget`` (also through ``from_documents`` / ``from_texts``): keep the
    ``TWNEmbeddings``' budgets in the collection, binding it in place. See the module docstring
    for what changes when ``embedding_function`` is a ``TWNEmbeddings``; with any other embedding
    every method is ``Chroma``'s own (and ``bind_budget=True`` is a ``ValueError``)."""

    def __init__(self, *args: Any, bind_budget: bool = False, **kwargs: Any) -> None:
        bound = _CHROMA_INIT.bind(self, *args, **kwargs)
        arguments = bound.arguments
        space_chosen = arguments.get("collection_configuration") or _LEGACY_SPACE_KEY in (
            arguments.get("collection_metadata") or {}
        )
        embeddings = arguments.get("embedding_function")
        if bind_budget and not isinstance(embeddings, TWNEmbeddings):
            raise ValueError(
                f"bind_budget=True keeps a TWNEmbeddings' budgets in the collection; got {type(embeddings).__name__}"
            )
        if isinstance(embeddings, TWNEmbeddings) and not space_chosen:
            arguments["collection_configuration"] = COSINE_CONFIGURATION
        super().__init__(*bound.args[1:], **bound.kwargs)
        if bind_budget:
            self._twn_embeddings.bind_budgets(self._collection)  # type: ignore[union-attr]
        else:
            self._refuse_budgets_of_another_collection()

    __init__.__signature__ = _CHROMA_INIT.replace(  # type: ignore[attr-defined]  # what help() and IDEs show
        parameters=[*_CHROMA_INIT.parameters.values(), _BIND_BUDGET]
    )

    def _refuse_budgets_of_another_collection(self) -> None:
        """Spending one collection's budget on writes into another would break both budgets."""
        embeddings = self._twn_embeddings
        bound = embeddings.budget_collection if embeddings is not None else None
        if bound is None:
            return
        here = CollectionAddress.of(self._collection)
        if bound != here:
            raise ValueError(
                f"the embeddings are bound to {bound.describe()}, but this store is {here.describe()}: "
                "bind them to this collection (bind_budget=True with an unbound TWNEmbeddings)"
            )

    def reset_collection(self) -> None:
        """``Chroma.reset_collection``; bound embeddings are bound to the new, empty collection,
        which keeps the budgets' limits (its ledger starts at zero)."""
        embeddings = self._twn_embeddings
        here = CollectionAddress.of(self._collection)
        if embeddings is None or embeddings.budget_collection != here:
            return super().reset_collection()
        limits = {field: embeddings.budget(role) for role, field in BUDGET_FIELDS.items()}
        super().reset_collection()
        embeddings.bind_budgets(self._collection, **limits)
        return None

    @property
    def _twn_embeddings(self) -> TWNEmbeddings | None:
        embedding = self._embedding_function
        return embedding if isinstance(embedding, TWNEmbeddings) else None

    # -- writing ----------------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """``Chroma.add_texts``; with ``TWNEmbeddings`` a text whose metadata has an
        ``image_path`` is embedded with that image, and the thought is recorded."""
        embeddings = self._twn_embeddings
        if embeddings is None:
            return super().add_texts(texts, metadatas, ids, **kwargs)
        texts = list(texts)
        metadatas = _one_per(texts, metadatas)
        ids = _ids_for(texts, ids)
        results = embeddings.encode_documents(texts, [metadata.get(IMAGE_PATH_KEY) for metadata in metadatas])
        self._write(self._collection.upsert, ids, texts, metadatas, results)
        return ids

    def add_images(
        self,
        uris: list[str],
        metadatas: list[dict] | None = None,
        ids: list[str] | None = None,
    ) -> list[str]:
        """``Chroma.add_images`` (the page content is the base64 image); with ``TWNEmbeddings``
        the thought is recorded."""
        embeddings = self._twn_embeddings
        if embeddings is None:
            return super().add_images(uris, metadatas, ids)
        ids = _ids_for(uris, ids)
        results = embeddings.encode_documents([""] * len(uris), uris)
        contents = [self.encode_image(uri=uri) for uri in uris]
        self._write(self._collection.upsert, ids, contents, _one_per(uris, metadatas), results)
        return ids

    def update_documents(self, ids: list[str], documents: list[Document]) -> None:
        """``Chroma.update_documents``; with ``TWNEmbeddings`` as ``add_texts`` embeds."""
        embeddings = self._twn_embeddings
        if embeddings is None:
            return super().update_documents(ids, documents)
        texts = [document.page_content for document in documents]
        metadatas = [dict(document.metadata) for document in documents]
        results = embeddings.encode_documents(texts, [metadata.get(IMAGE_PATH_KEY) for metadata in metadatas])
        self._write(self._collection.update, ids, texts, metadatas, results)
        return None

    def _write(
        self,
        write: Callable[..., Any],
        ids: list[str],
        contents: list[str],
        metadatas: list[dict],
        results: list[EmbeddingResult],
    ) -> None:
        """``write`` (the collection's ``upsert`` or ``update``) the records in batches Chroma
        accepts, each record's metadata extended with its result's thought metadata."""
        from chromadb.utils.batch_utils import create_batches

        records = [{**metadata, **result_metadata(result)} for metadata, result in zip(metadatas, results)]
        vectors = as_float_lists(results)
        for batch_ids, batch_vectors, batch_records, batch_contents in create_batches(
            api=self._client, ids=ids, embeddings=vectors, metadatas=records, documents=contents
        ):
            write(ids=batch_ids, embeddings=batch_vectors, metadatas=batch_records, documents=batch_contents)

    # -- searching by image -------------------------------------------------------------------
    def similarity_search_by_image(
        self,
        uri: str,
        k: int = DEFAULT_K,
        filter: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``Chroma.similarity_search_by_image``; with ``TWNEmbeddings`` the image is embedded
        as a query (query role, query budget)."""
        embeddings = self._twn_embeddings
        if embeddings is None:
            return super().similarity_search_by_image(uri, k, filter, **kwargs)
        return self.similarity_search_by_vector(embeddings.embed_query_image(uri), k=k, filter=filter, **kwargs)

    def similarity_search_by_image_with_relevance_score(
        self,
        uri: str,
        k: int = DEFAULT_K,
        filter: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """``Chroma.similarity_search_by_image_with_relevance_score``; with ``TWNEmbeddings``
        the image is embedded as a query and each hit comes with its relevance score in 0..1."""
        embeddings = self._twn_embeddings
        if embeddings is None:
            return super().similarity_search_by_image_with_relevance_score(uri, k, filter, **kwargs)
        relevance = self._select_relevance_score_fn()
        hits = self.similarity_search_by_vector_with_relevance_scores(
            embeddings.embed_query_image(uri), k=k, filter=filter, **kwargs
        )
        return [(document, relevance(distance)) for document, distance in hits]

    # -- scores ----------------------------------------------------------------------------------
    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """With ``TWNEmbeddings`` (and no ``relevance_score_fn`` given): the clipped cosine
        similarity, whatever space the collection was created in; else ``Chroma``'s choice."""
        if self._twn_embeddings is None or self.override_relevance_score_fn:
            return super()._select_relevance_score_fn()
        space = self._distance_space()
        return lambda distance: cosine_relevance(distance, space)

    def _distance_space(self) -> str:
        configuration = self._collection.configuration
        for index in ("hnsw", "spann"):
            space = (configuration.get(index) or {}).get("space")
            if space:
                return space
        return "l2"  # Chroma's default


def _one_per(values: Sequence[Any], metadatas: list[dict] | None) -> list[dict]:
    """One metadata dict per value (copies, padded with empty ones, as ``Chroma`` pads)."""
    given = [dict(metadata or {}) for metadata in metadatas or []]
    return given + [{} for _ in range(len(values) - len(given))]


def _ids_for(values: Sequence[Any], ids: list[str] | None) -> list[str]:
    """The given ids, a fresh UUID for each one missing (``Chroma``'s rule)."""
    if ids is None:
        return [str(uuid.uuid4()) for _ in values]
    return [id_ if id_ is not None else str(uuid.uuid4()) for id_ in ids]
