"""``llama_index.embeddings.twn.TWNEmbedding`` against the offline tiny TWN, real LlamaIndex
indexes and pipelines, and an embedded Chroma."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import ImageNode, MetadataMode, TextNode
from llama_index.embeddings.twn import TWNEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore
from pydantic import ValidationError

from twn_rag import InvalidInputError, ReasoningBudget
from twn_rag.result_metadata import GATE_SCORE_KEY, RESULT_METADATA_KEYS, THOUGHT_KEY, THOUGHT_TOKENS_KEY
from twn_rag.testing.integrations import always, never, top_ids, with_loop_ticks

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


# -- the package -----------------------------------------------------------------------------
def test_is_a_namespace_package_with_the_llama_index_layout():
    assert (PACKAGE_ROOT / "llama_index" / "embeddings" / "twn" / "__init__.py").is_file()
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "embeddings" / "__init__.py").exists()
    assert issubclass(TWNEmbedding, MultiModalEmbedding)
    assert TWNEmbedding.class_name() == "TWNEmbedding"


def test_loads_a_checkpoint_by_path(tiny_ckpt):
    model = TWNEmbedding(model_name=str(tiny_ckpt), device="cpu", dtype="float32")
    assert model.model_name == str(tiny_ckpt)
    assert len(model.get_query_embedding("a query")) == model.embedder.dimension


# -- roles, batching, images ---------------------------------------------------------------------
def test_queries_use_the_query_role_and_texts_the_document_role(embedder):
    model = TWNEmbedding(embedder=embedder, query_budget=never(), document_budget=never())
    text = "The invoice total is the sum of the line items plus tax."
    query_vec = model.get_query_embedding(text)
    text_vec = model.get_text_embedding(text)
    assert isinstance(query_vec[0], float) and isinstance(text_vec[0], float)
    np.testing.assert_allclose(query_vec, embedder.encode([text], role="query", budget=never())[0].vector, atol=1e-5)
    np.testing.assert_allclose(text_vec, embedder.encode([text], role="document", budget=never())[0].vector, atol=1e-5)
    assert not np.allclose(query_vec, text_vec, atol=1e-3)


def test_a_text_batch_is_one_forward_pass_per_chunk(embedder, forward_passes, document_texts):
    model = TWNEmbedding(embedder=embedder, document_budget=never(), embed_batch_size=2)
    vectors = model.get_text_embedding_batch(document_texts)
    assert forward_passes["n"] == 3  # 5 texts in chunks of 2
    single = [model.get_text_embedding(t) for t in document_texts]
    np.testing.assert_allclose(vectors, single, atol=1e-4)


def test_images_as_path_bytesio_and_base64_node_embed_the_same(embedder, image_files, forward_passes):
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    path = image_files[0]
    raw = path.read_bytes()
    buffer = io.BytesIO(raw)
    by_path, by_buffer, by_buffer_again = model.get_image_embedding_batch([str(path), buffer, buffer])
    assert forward_passes["n"] == 1
    node = ImageNode(image=base64.b64encode(raw).decode())
    (by_node,) = model([node])
    np.testing.assert_allclose(by_path, by_buffer, atol=1e-5)
    np.testing.assert_allclose(by_path, by_buffer_again, atol=1e-5)
    np.testing.assert_allclose(by_path, by_node.embedding, atol=1e-5)
    other = model.get_image_embedding(str(image_files[1]))
    assert not np.allclose(by_path, other, atol=1e-3)


def test_an_image_node_with_text_embeds_image_and_text(embedder, image_files):
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    node = ImageNode(image_path=str(image_files[0]), text="a chart of sales")
    (node,) = model([node])
    expected = embedder.encode(
        [{"image": str(image_files[0]), "text": "a chart of sales"}], role="document", budget=never()
    )[0]
    np.testing.assert_allclose(node.embedding, expected.vector, atol=1e-5)


# -- budgets ----------------------------------------------------------------------------------
def test_budgets_persist_their_ledgers_per_role(embedder, document_texts):
    query_budget, document_budget = always(3), always(3)
    model = TWNEmbedding(embedder=embedder, query_budget=query_budget, document_budget=document_budget)
    assert model.query_budget is query_budget and model.document_budget is document_budget
    model.get_text_embedding_batch(document_texts[:3])
    model.get_text_embedding_batch(document_texts[3:])
    model.get_query_embedding("the invoice total")
    assert document_budget.ledger.items_seen == 5 and document_budget.ledger.items_thought == 5
    assert 5 <= document_budget.ledger.thought_tokens <= 15
    assert query_budget.ledger.items_seen == 1 and query_budget.ledger.items_thought == 1


def test_unset_budgets_are_the_checkpoints_adaptive_budget(embedder):
    model = TWNEmbedding(embedder=embedder)
    assert model.query_budget == embedder.default_budget()
    assert model.document_budget is not model.query_budget
    model.get_query_embedding("a query")
    assert model.query_budget.ledger.items_seen == 1


def test_a_think_ratio_cap_holds_across_calls(embedder, document_texts):
    budget = ReasoningBudget(mode="always", max_think_ratio=0.4, max_thought_tokens=3)
    model = TWNEmbedding(embedder=embedder, document_budget=budget, embed_batch_size=2)
    nodes = model([TextNode(text=t) for t in document_texts])
    thought = [n.metadata[THOUGHT_TOKENS_KEY] > 0 for n in nodes]
    assert sum(thought) == 2 and budget.ledger.items_thought == 2 and budget.ledger.items_seen == 5


# -- the transformation path --------------------------------------------------------------------
def test_transformation_records_thoughts_in_excluded_scalar_metadata(embedder, document_texts):
    model = TWNEmbedding(embedder=embedder, document_budget=always(4))
    nodes = [TextNode(text=t, metadata={"source": f"doc-{i}"}) for i, t in enumerate(document_texts)]
    embed_text_before = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    model(nodes)
    for node, before in zip(nodes, embed_text_before):
        assert len(node.embedding) == embedder.dimension
        thought = node.metadata[THOUGHT_KEY]
        assert isinstance(thought, str) and thought
        assert isinstance(node.metadata[GATE_SCORE_KEY], float) and 0.0 <= node.metadata[GATE_SCORE_KEY] <= 1.0
        assert isinstance(node.metadata[THOUGHT_TOKENS_KEY], int) and 0 < node.metadata[THOUGHT_TOKENS_KEY] <= 4
        assert node.get_content(metadata_mode=MetadataMode.EMBED) == before
        assert THOUGHT_KEY not in node.get_content(metadata_mode=MetadataMode.LLM)
        assert "doc-" in node.get_content(metadata_mode=MetadataMode.LLM)
        assert set(RESULT_METADATA_KEYS) <= set(node.excluded_embed_metadata_keys)
        assert set(RESULT_METADATA_KEYS) <= set(node.excluded_llm_metadata_keys)
    # Embedding the annotated nodes again embeds the same text: the recorded thought is not part of it.
    again = model([n.model_copy(deep=True) for n in nodes])
    np.testing.assert_allclose([n.embedding for n in again], [n.embedding for n in nodes], atol=1e-5)


def test_transformation_without_thinking_matches_the_text_path(embedder, document_texts):
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    nodes = model([TextNode(text=t) for t in document_texts])
    np.testing.assert_allclose([n.embedding for n in nodes], model.get_text_embedding_batch(document_texts), atol=1e-5)
    assert all(n.metadata[THOUGHT_KEY] == "" and n.metadata[THOUGHT_TOKENS_KEY] == 0 for n in nodes)


# -- serialisation, construction, errors ---------------------------------------------------------------
def test_round_trips_through_json_without_the_model(embedder, tiny_ckpt):
    budget = always(3)
    model = TWNEmbedding(embedder=embedder, document_budget=budget, embed_batch_size=4)
    model.get_text_embedding_batch(["one document", "another document"])
    text = model.to_json()
    data = json.loads(text)
    assert data["class_name"] == "TWNEmbedding"
    assert data["model_name"] == str(tiny_ckpt) and data["device"] == "cpu" and data["dtype"] == "float32"
    assert data["document_budget"]["ledger"]["items_thought"] == 2
    assert "embedder" not in data and len(text) < 2000

    reloaded = TWNEmbedding.from_json(text)  # loads the model again from model_name
    assert reloaded.embedder is not embedder
    assert reloaded.document_budget == budget and reloaded.embed_batch_size == 4
    np.testing.assert_allclose(reloaded.get_query_embedding("a query"), model.get_query_embedding("a query"), atol=1e-5)
    shared = TWNEmbedding.from_json(text, embedder=embedder)
    assert shared.embedder is embedder and shared.document_budget.ledger == budget.ledger


def test_unknown_options_fail_at_construction(embedder):
    with pytest.raises(ValidationError, match="batch_size"):
        TWNEmbedding(embedder=embedder, batch_size=4)  # LangChain's name, not LlamaIndex's
    with pytest.raises(ValidationError, match="query_budget"):
        TWNEmbedding(embedder=embedder, query_budget={"mode": "sometimes"})


def test_a_shared_embedder_must_agree_with_explicit_settings(embedder, tiny_ckpt):
    a, b = TWNEmbedding(embedder=embedder), TWNEmbedding(embedder=embedder, model_name=str(tiny_ckpt))
    assert a.embedder is b.embedder is embedder
    with pytest.raises(ValueError, match="does not match"):
        TWNEmbedding(embedder=embedder, model_name="zhanglx/TWN-8B")
    with pytest.raises(ValueError, match="does not match"):
        TWNEmbedding(embedder=embedder, dtype="bfloat16")


def test_bad_images_raise_errors_that_name_them(embedder, tmp_path, image_files):
    model = TWNEmbedding(embedder=embedder)
    missing = tmp_path / "missing.png"
    with pytest.raises(InvalidInputError, match="missing.png"):
        model.get_image_embedding_batch([str(image_files[0]), str(missing)])
    with pytest.raises(InvalidInputError, match=r"input 0 \(image of 12 bytes\): cannot read image"):
        model.get_image_embedding(io.BytesIO(b"not an image"))
    broken = ImageNode(image=base64.b64encode(b"garbage").decode(), id_="page-7")
    with pytest.raises(InvalidInputError, match=r"input 1 \(node page-7\): cannot read image"):
        model([TextNode(text="fine"), broken])


# -- async ------------------------------------------------------------------------------------
async def test_async_methods_match_sync_and_leave_the_loop_free(embedder, document_texts, image_files):
    model = TWNEmbedding(embedder=embedder, query_budget=never(), document_budget=never(), embed_batch_size=2)

    async def all_three():
        return (
            await model.aget_text_embedding_batch(document_texts),
            await model.aget_query_embedding("a query"),
            await model.aget_image_embedding_batch([str(p) for p in image_files]),
        )

    (texts, query, images), ticks = await with_loop_ticks(all_three())
    assert ticks > 10  # the loop kept running while the embeddings were computed in threads
    np.testing.assert_allclose(texts, model.get_text_embedding_batch(document_texts), atol=1e-5)
    np.testing.assert_allclose(query, model.get_query_embedding("a query"), atol=1e-5)
    np.testing.assert_allclose(images, model.get_image_embedding_batch([str(p) for p in image_files]), atol=1e-5)
    nodes = await model.acall([TextNode(text=t) for t in document_texts])
    np.testing.assert_allclose([n.embedding for n in nodes], texts, atol=1e-5)


# -- end to end -------------------------------------------------------------------------------------
def test_vector_store_index_over_chroma_with_a_retriever(embedder, chroma_client, document_texts):
    model = TWNEmbedding(embedder=embedder, document_budget=always(4))
    collection = chroma_client.get_or_create_collection("docs", embedding_function=None)
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    documents = [Document(text=t, metadata={"source": f"doc-{i}.txt"}) for i, t in enumerate(document_texts)]
    index = VectorStoreIndex.from_documents(
        documents, storage_context=storage, embed_model=model, transformations=[SentenceSplitter(), model]
    )
    stored = collection.get(include=["embeddings", "metadatas"])
    assert len(stored["ids"]) == len(document_texts) == model.document_budget.ledger.items_seen
    for metadata in stored["metadatas"]:
        assert metadata[THOUGHT_KEY] and metadata[THOUGHT_TOKENS_KEY] > 0 and 0 <= metadata[GATE_SCORE_KEY] <= 1

    query = "Which document talks about the invoice total?"
    hits = index.as_retriever(similarity_top_k=3).retrieve(query)
    expected = top_ids(model.get_query_embedding(query), stored["ids"], stored["embeddings"], 3)
    assert [hit.node.node_id for hit in hits] == expected
    assert all(hit.node.metadata[THOUGHT_KEY] for hit in hits)


def test_vector_store_index_without_the_transformation_embeds_plain_texts(embedder, chroma_client, document_texts):
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    collection = chroma_client.get_or_create_collection("plain", embedding_function=None)
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(document_texts)]
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=model)
    stored = collection.get(ids=[n.node_id for n in nodes], include=["embeddings"])
    np.testing.assert_allclose(stored["embeddings"], model.get_text_embedding_batch(document_texts), atol=1e-5)
    hits = index.as_retriever(similarity_top_k=2).retrieve("the capital of France")
    assert [h.node.node_id for h in hits] == top_ids(
        model.get_query_embedding("the capital of France"), stored["ids"], stored["embeddings"], 2
    )


def test_multimodal_index_with_a_chroma_image_store_retrieves_images_by_text(
    embedder, chroma_client, document_texts, image_files
):
    model = TWNEmbedding(embedder=embedder)
    text_collection = chroma_client.get_or_create_collection("text", embedding_function=None)
    image_collection = chroma_client.get_or_create_collection("images", embedding_function=None)
    storage = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=text_collection),
        image_store=ChromaVectorStore(chroma_collection=image_collection),
    )
    text_nodes = [TextNode(text=t) for t in document_texts[:3]]
    # LlamaIndex indexes only nodes with some embed content (text or metadata).
    image_nodes = [
        ImageNode(image_path=str(image_files[0]), id_="by-path", metadata={"file_name": image_files[0].name}),
        ImageNode(
            image=base64.b64encode(image_files[1].read_bytes()).decode(),
            id_="by-base64",
            metadata={"file_name": image_files[1].name},
        ),
        ImageNode(image_path=str(image_files[2]), id_="by-path-2", metadata={"file_name": image_files[2].name}),
    ]
    index = MultiModalVectorStoreIndex(
        text_nodes + image_nodes, storage_context=storage, embed_model=model, image_embed_model=model
    )
    assert text_collection.count() == 3 and image_collection.count() == 3
    stored = image_collection.get(include=["embeddings"])
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    direct = model.get_image_embedding_batch([str(p) for p in image_files])
    np.testing.assert_allclose([by_id["by-path"], by_id["by-base64"], by_id["by-path-2"]], direct, atol=1e-5)

    query = "a red square on a white page"
    retriever = index.as_retriever(similarity_top_k=2, image_similarity_top_k=2)
    image_hits = retriever.text_to_image_retrieve(query)
    assert all(isinstance(hit.node, ImageNode) for hit in image_hits)
    expected = top_ids(model.get_query_embedding(query), stored["ids"], stored["embeddings"], 2)
    assert [hit.node.node_id for hit in image_hits] == expected
    both = retriever.retrieve(query)
    assert sum(isinstance(h.node, ImageNode) for h in both) == 2 and len(both) == 4


def test_ingestion_pipeline_into_chroma(embedder, chroma_client, document_texts, image_files):
    budget = ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3)
    model = TWNEmbedding(embedder=embedder, document_budget=budget)
    collection = chroma_client.get_or_create_collection("pipeline", embedding_function=None)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0), model],
        vector_store=ChromaVectorStore(chroma_collection=collection),
    )
    documents = [Document(text=" ".join(document_texts), metadata={"source": "all.txt"})]
    nodes = pipeline.run(documents=documents)
    assert len(nodes) > 1 and collection.count() == len(nodes)
    assert budget.ledger.items_seen == len(nodes) and budget.ledger.items_thought == len(nodes) // 2
    assert sum(n.metadata[THOUGHT_TOKENS_KEY] > 0 for n in nodes) == len(nodes) // 2
    stored = collection.get(ids=[n.node_id for n in nodes], include=["embeddings", "metadatas"])
    np.testing.assert_allclose(stored["embeddings"], [n.embedding for n in nodes], atol=1e-5)
    assert [m[THOUGHT_KEY] for m in stored["metadatas"]] == [n.metadata[THOUGHT_KEY] for n in nodes]

    image_pipeline = IngestionPipeline(transformations=[model])
    (image_node,) = image_pipeline.run(nodes=[ImageNode(image_path=str(image_files[0]))])
    assert image_node.embedding is not None and THOUGHT_KEY in image_node.metadata


def test_show_progress_shows_a_bar(embedder, capsys, document_texts):
    TWNEmbedding(embedder=embedder, document_budget=never(), show_progress=True).get_text_embedding_batch(
        document_texts
    )
    assert "twn encode" in capsys.readouterr().err
