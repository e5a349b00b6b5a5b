"""``TWNIndex.as_llama_index_retriever`` (``twn_rag/index/llama_index_retriever.py``): a query
engine with ``MockLLM`` over an index of a PDF and a video, image and text-only hits, the
query's thought on every node, async, and an index written in the old metadata schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, QueryBundle, TextNode
from support.legacy_records import LEGACY_KEYS

from twn_rag.index import TWNIndex
from twn_rag.loaders import DocumentItem, FileRef, iter_file_items
from twn_rag.loaders.convert import LOCATION_METADATA_KEYS, TECHNICAL_METADATA_KEYS, to_llama_index_node
from twn_rag.result_metadata import (
    GATE_SCORE_KEY,
    QUERY_RESULT_METADATA_KEYS,
    RESULT_METADATA_KEYS,
    THOUGHT_KEY,
    THOUGHT_USED_KEY,
)
from twn_rag.testing.integrations import always, with_loop_ticks

QUESTION = "Configure the budget."
QUERY_THOUGHT_KEY, QUERY_GATE_KEY = QUERY_RESULT_METADATA_KEYS[:2]
# What the index records for pages and frames that an LLM has no use for (stated here, not
# taken from the code under test).
DESCRIPTIVE_KEYS = ("source", "file_name", "page", "timestamp", "modality")
BOOKKEEPING_KEYS = (
    "content_hash", "last_in_file", "page_width_pt", "page_height_pt", "source_type", "frame_index", "page_count",
    "image_path", "twn_writer", "twn_final", "twn_think_writer", "twn_thought", "twn_gate_score",
    "twn_thought_tokens", "twn_thought_used",
    "twn_query_thought", "twn_query_gate_score", "twn_query_thought_tokens", "twn_query_thought_used",
)  # fmt: skip


def test_query_engine_cites_pages_frames_images_and_thoughts_without_bookkeeping(pdf_and_video_index):
    index = pdf_and_video_index
    retriever = index.as_llama_index_retriever(similarity_top_k=index.count())
    assert isinstance(retriever, BaseRetriever)
    response = RetrieverQueryEngine.from_args(retriever, llm=MockLLM()).query(QUESTION)
    stored = index._collection.get(include=["metadatas"])
    assert sorted(hit.node.node_id for hit in response.source_nodes) == sorted(stored["ids"])
    query_thoughts = {hit.node.metadata[QUERY_THOUGHT_KEY] for hit in response.source_nodes}
    assert len(query_thoughts) == 1 and next(iter(query_thoughts))  # the query thought, beside every hit
    for hit in response.source_nodes:
        node, metadata = hit.node, hit.node.metadata
        assert isinstance(node, ImageNode)
        assert Path(node.image_path).is_absolute() and Path(node.image_path).is_file()
        assert ("page" in metadata) != ("timestamp" in metadata)
        assert node.ref_doc_id == metadata["source"] and Path(metadata["source"]).is_absolute()
        assert metadata[THOUGHT_KEY] and metadata[THOUGHT_USED_KEY] is True  # every document thought
        assert 0.0 <= metadata[QUERY_GATE_KEY] <= 1.0
        llm_text = node.get_content(metadata_mode=MetadataMode.LLM)
        embed_text = node.get_content(metadata_mode=MetadataMode.EMBED)
        assert llm_text in response.response  # MockLLM answers with the prompt it was given
        assert f"file_name: {metadata['file_name']}" in llm_text and "modality: " in llm_text
        assert set(metadata) <= {*DESCRIPTIVE_KEYS, *BOOKKEEPING_KEYS}  # no key escapes the checks below
        for key in BOOKKEEPING_KEYS:
            assert f"{key}: " not in llm_text and f"{key}: " not in embed_text
        assert all(f"{key}: " not in embed_text for key in LOCATION_METADATA_KEYS)
    for text in ("page: 1", "page: 2", "page: 3", "timestamp: 0.5", "Configure the budget."):
        assert text in response.response
    assert not any(m["content_hash"] in response.response for m in stored["metadatas"])
    assert str(index.images_dir) not in response.response  # image paths are not LLM text
    assert next(iter(query_thoughts)) not in response.response


def test_hits_are_the_index_search_with_the_query_thought(pdf_and_video_index):
    index = pdf_and_video_index
    nodes = index.as_llama_index_retriever(similarity_top_k=5).retrieve(QUESTION)
    hits = index.search(QUESTION, k=5)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    asked = index.last_query
    assert all(n.node.metadata[QUERY_THOUGHT_KEY] == asked.thought for n in nodes)
    assert all(n.node.metadata[QUERY_GATE_KEY] == pytest.approx(asked.gate_score, abs=1e-6) for n in nodes)
    assert all(n.node.metadata[THOUGHT_KEY] == h.thought for n, h in zip(nodes, hits))


def test_an_image_query_and_a_filter(pdf_and_video_index):
    index = pdf_and_video_index
    frame = index.search(QUESTION, k=1, where={"source_type": "video"})[0]
    retriever = index.as_llama_index_retriever(similarity_top_k=3, where={"source_type": "pdf"})
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=frame.image_path))
    hits = index.search(image=frame.image_path, k=3, where={"source_type": "pdf"})
    assert [n.node.node_id for n in nodes] == [h.id for h in hits] and len(nodes) == 3
    assert [n.score for n in nodes] == [h.score for h in hits]
    assert all(n.node.metadata["page"] in (1, 2, 3) for n in nodes)
    with pytest.raises(ValueError, match="text query, an image, or both"):
        retriever.retrieve(QueryBundle(query_str=""))


async def test_aretrieve_runs_in_a_thread_and_equals_retrieve(pdf_and_video_index):
    retriever = pdf_and_video_index.as_llama_index_retriever(similarity_top_k=4)
    expected = retriever.retrieve(QUESTION)
    (first, other), ticks = await with_loop_ticks(
        asyncio.gather(retriever.aretrieve(QUESTION), retriever.aretrieve("A red square."))
    )
    assert ticks > 0  # the event loop stayed free while the queries were embedded
    assert [(n.node.node_id, n.score) for n in first] == [(n.node.node_id, n.score) for n in expected]
    assert first[0].node.metadata[QUERY_THOUGHT_KEY] == expected[0].node.metadata[QUERY_THOUGHT_KEY]
    assert [n.score for n in other] != [n.score for n in first]


def test_nodes_hide_the_same_keys_as_the_loaders_and_the_readers_nodes(pdf_and_video_index, tmp_path):
    index = pdf_and_video_index
    nodes = {n.node.node_id: n.node for n in index.as_llama_index_retriever(similarity_top_k=7).retrieve(QUESTION)}
    source = next(n.metadata["source"] for n in nodes.values() if "page" in n.metadata)
    items = list(iter_file_items(FileRef.describe(source), index.manifest.loader))
    for item in items:
        item.save_image(tmp_path)
        loaded, retrieved = to_llama_index_node(item), nodes[item.id]
        assert (type(retrieved), retrieved.text, retrieved.ref_doc_id) == (type(loaded), loaded.text, loaded.ref_doc_id)
        shared = set(loaded.metadata) & set(retrieved.metadata)
        assert shared == set(loaded.metadata) - {"image_path"}
        assert {k: loaded.metadata[k] for k in shared} == {k: retrieved.metadata[k] for k in shared}
        for excluded in ("excluded_llm_metadata_keys", "excluded_embed_metadata_keys"):
            assert set(getattr(loaded, excluded)) & shared == set(getattr(retrieved, excluded)) & shared
        assert set(retrieved.metadata) - shared - {"modality", "image_path"} <= set(TECHNICAL_METADATA_KEYS)
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):  # the same lines (metadata order aside)
            assert sorted(retrieved.get_content(mode).splitlines()) == sorted(loaded.get_content(mode).splitlines())


def test_a_text_only_item_comes_back_as_a_text_node(tmp_path, embedder):
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=always(), query_budget=always())
    note = DocumentItem(id="note-1", text="The budget is set per index.", metadata={"source": "notes"})
    index.store([note], index.embedder.encode([note.to_input()], role="document", budget=always()))
    [hit] = index.as_llama_index_retriever(similarity_top_k=1).retrieve("How is the budget set?")
    assert type(hit.node) is TextNode and hit.node.node_id == "note-1" and hit.node.ref_doc_id == "notes"
    assert hit.node.text == note.text and "image_path" not in hit.node.metadata
    assert hit.node.get_content(MetadataMode.LLM) == "modality: text\nsource: notes\n\nThe budget is set per index."


def test_an_index_written_in_the_old_schema_reads_thoughts_and_gate_scores(legacy_index):
    old, written = legacy_index
    nodes = old.as_llama_index_retriever(similarity_top_k=7).retrieve(QUESTION)
    assert len(nodes) == 7
    for node_with_score in nodes:
        node = node_with_score.node
        recorded = written[node.node_id]
        assert {k: node.metadata[k] for k in RESULT_METADATA_KEYS} == {k: recorded[k] for k in RESULT_METADATA_KEYS}
        assert node.metadata[THOUGHT_KEY] and 0.0 <= node.metadata[GATE_SCORE_KEY] <= 1.0
        assert not LEGACY_KEYS & set(node.metadata)
        assert f"{THOUGHT_KEY}: " not in node.get_content(MetadataMode.LLM)
