"""``llama_index.readers.twn.TWNReader`` on generated PDFs and videos, with LlamaIndex's own
``SimpleDirectoryReader``, node parser, Chroma vector store and query engine (``MockLLM``), and
the offline tiny TWN."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import ImageDocument, ImageNode, MetadataMode
from llama_index.embeddings.twn import TWNEmbedding
from llama_index.readers.twn import TWNReader
from llama_index.vector_stores.chroma import ChromaVectorStore

from twn_rag.index.client import COSINE_CONFIGURATION
from twn_rag.loaders import FileRef, LoadError, LoaderSettings, iter_file_items
from twn_rag.loaders.convert import TECHNICAL_METADATA_KEYS
from twn_rag.result_metadata import THOUGHT_KEY
from twn_rag.samples import write_sample_pdf
from twn_rag.testing.integrations import always, never

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SMALL = LoaderSettings(max_image_pixels=64 * 64, video_fps=2.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sample_video) -> tuple[Path, Path, Path]:
    """A folder with a 3-page PDF and a 2-second video: (folder, pdf, video)."""
    folder = tmp_path_factory.mktemp("corpus")
    pdf = write_sample_pdf(folder / "manual.pdf", 3)
    video = Path(shutil.copy(sample_video, folder / "clip.mp4"))
    return folder, pdf, video


def _read_folder(folder: Path, image_dir: Path, **reader_options) -> list:
    reader = TWNReader(image_dir=image_dir, settings=SMALL)
    return SimpleDirectoryReader(
        str(folder), file_extractor={".pdf": reader, ".mp4": reader}, **reader_options
    ).load_data()


def _chroma_index(chroma_client, name: str, documents, model: TWNEmbedding):
    """A Chroma-backed index built with the TWN transformation, which embeds image nodes jointly."""
    collection = chroma_client.get_or_create_collection(
        name, embedding_function=None, configuration=COSINE_CONFIGURATION
    )
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    index = VectorStoreIndex.from_documents(
        documents, storage_context=storage, embed_model=model, transformations=[SentenceSplitter(), model]
    )
    return index, collection


# -- the package ---------------------------------------------------------------------------------
def test_is_a_namespace_package_with_the_llama_index_layout():
    assert (PACKAGE_ROOT / "llama_index" / "readers" / "twn" / "__init__.py").is_file()
    assert not (PACKAGE_ROOT / "llama_index" / "__init__.py").exists()
    assert not (PACKAGE_ROOT / "llama_index" / "readers" / "__init__.py").exists()
    assert issubclass(TWNReader, BaseReader)


# -- on its own ------------------------------------------------------------------------------------
def test_load_data_gives_one_image_document_per_page_with_absolute_image_paths(corpus, tmp_path):
    _, pdf, _ = corpus
    items = list(iter_file_items(FileRef.describe(pdf), SMALL))
    documents = TWNReader(image_dir=tmp_path / "images", settings=SMALL).load_data(pdf)
    assert [d.id_ for d in documents] == [item.id for item in items]
    assert [d.text for d in documents] == [item.text for item in items]
    assert [d.metadata["page"] for d in documents] == [1, 2, 3]
    for document in documents:
        assert isinstance(document, ImageDocument)
        image = Path(document.image_path)
        assert image.is_absolute() and image.is_file() and image.parent == (tmp_path / "images").resolve()
        assert document.ref_doc_id == str(pdf.resolve())


def test_lazy_load_data_yields_one_page_at_a_time(corpus, tmp_path):
    _, pdf, _ = corpus
    image_dir = tmp_path / "images"
    documents = TWNReader(image_dir=image_dir, settings=SMALL).lazy_load_data(pdf)
    first = next(documents)
    assert first.metadata["page"] == 1 and len(list(image_dir.iterdir())) == 1  # page 2 not rendered yet
    assert [d.metadata["page"] for d in documents] == [2, 3]


def test_a_damaged_file_raises_a_load_error_naming_it(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(LoadError, match="broken.pdf: damaged or not a PDF"):
        TWNReader(image_dir=tmp_path).load_data(broken)


# -- in SimpleDirectoryReader ---------------------------------------------------------------------------
def test_simple_directory_reader_reads_pages_and_frames(corpus, tmp_path):
    folder, pdf, video = corpus
    documents = _read_folder(folder, tmp_path / "images")
    pages = [d for d in documents if d.metadata["source_type"] == "pdf"]
    frames = [d for d in documents if d.metadata["source_type"] == "video"]
    expected_timestamps = [item.metadata["timestamp"] for item in iter_file_items(FileRef.describe(video), SMALL)]
    assert len(expected_timestamps) >= 2
    assert [d.metadata["page"] for d in pages] == [1, 2, 3]
    assert [d.metadata["timestamp"] for d in frames] == expected_timestamps
    assert all(d.text.startswith(f"Page {d.metadata['page']}.") for d in pages)
    assert all(d.text == "" for d in frames)
    for document in documents:
        assert isinstance(document, ImageDocument)
        assert Path(document.image_path).is_absolute() and Path(document.image_path).is_file()
        assert document.ref_doc_id == document.metadata["source"]
        assert document.metadata["file_path"]  # SimpleDirectoryReader's extra_info is kept
    assert {d.ref_doc_id for d in pages} == {str(pdf.resolve())}
    assert {d.ref_doc_id for d in frames} == {str(video.resolve())}


def test_filename_as_id_keeps_the_source_file_as_ref_doc_id(corpus, tmp_path):
    folder, pdf, _ = corpus
    documents = _read_folder(folder, tmp_path / "images", filename_as_id=True)
    pages = [d for d in documents if d.metadata["source_type"] == "pdf"]
    assert [d.id_ for d in pages] == [f"{pdf}_part_{i}" for i in range(3)]  # SimpleDirectoryReader's ids
    assert {d.ref_doc_id for d in pages} == {str(pdf.resolve())}


def test_node_parser_gives_image_nodes_that_keep_image_source_and_exclusions(corpus, tmp_path):
    folder, _, _ = corpus
    documents = _read_folder(folder, tmp_path / "images")
    nodes = SentenceSplitter().get_nodes_from_documents(documents)
    assert len(nodes) == len(documents)  # short pages, and frames without text, are one node each
    for document, node in zip(documents, nodes):
        assert isinstance(node, ImageNode) and node.image_path == document.image_path
        assert node.ref_doc_id == document.metadata["source"]
        embed_text = node.get_content(metadata_mode=MetadataMode.EMBED)
        llm_text = node.get_content(metadata_mode=MetadataMode.LLM)
        for key in TECHNICAL_METADATA_KEYS:
            assert f"{key}:" not in embed_text and f"{key}:" not in llm_text
        assert document.metadata["source"] not in embed_text  # the same file embeds the same wherever it is
        assert document.metadata["file_path"] in llm_text  # the LLM can cite it
        locator = f"page: {node.metadata['page']}" if "page" in node.metadata else "timestamp: "
        assert locator in embed_text and locator in llm_text


# -- into an index ----------------------------------------------------------------------------------------
def _place(metadata: dict) -> tuple:
    """Where a node comes from: its file and page or timestamp (one node per page or frame here)."""
    return metadata["source"], metadata.get("page"), metadata.get("timestamp")


def test_image_nodes_reach_chroma_embedded_from_text_and_image(embedder, chroma_client, corpus, tmp_path):
    folder, _, _ = corpus
    documents = _read_folder(folder, tmp_path / "images")
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    _, collection = _chroma_index(chroma_client, "joint", documents, model)
    stored = collection.get(include=["embeddings", "metadatas"])
    assert len(stored["ids"]) == len(documents)
    assert collection.configuration["hnsw"]["space"] == "cosine"
    vector_at = {_place(m): v for m, v in zip(stored["metadatas"], stored["embeddings"])}
    nodes = SentenceSplitter().get_nodes_from_documents(documents)
    expected = embedder.encode(
        [{"text": n.get_content(metadata_mode=MetadataMode.EMBED), "image": n.image_path} for n in nodes],
        role="document",
        budget=never(),
    )
    np.testing.assert_allclose([vector_at[_place(n.metadata)] for n in nodes], [r.vector for r in expected], atol=1e-5)


def test_delete_ref_doc_removes_every_node_of_the_file(embedder, chroma_client, corpus, tmp_path):
    folder, pdf, video = corpus
    documents = _read_folder(folder, tmp_path / "images")
    model = TWNEmbedding(embedder=embedder, document_budget=never())
    index, collection = _chroma_index(chroma_client, "deletable", documents, model)
    frame_count = sum(d.metadata["source_type"] == "video" for d in documents)
    assert collection.count() == len(documents) == frame_count + 3

    index.delete_ref_doc(str(pdf.resolve()))
    remaining = collection.get(include=["metadatas"])["metadatas"]
    assert len(remaining) == frame_count
    assert {m["source"] for m in remaining} == {str(video.resolve())}
    hits = index.as_retriever(similarity_top_k=10).retrieve("the invoice total")
    assert hits and all(hit.node.ref_doc_id == str(video.resolve()) for hit in hits)


def test_query_engine_with_mock_llm_cites_pages_and_images_without_bookkeeping(
    embedder, chroma_client, corpus, tmp_path
):
    folder, _, _ = corpus
    documents = _read_folder(folder, tmp_path / "images")
    model = TWNEmbedding(embedder=embedder, query_budget=never(), document_budget=always(3))
    index, _ = _chroma_index(chroma_client, "answers", documents, model)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=len(documents))
    response = engine.query("What is the invoice total?")
    assert len(response.source_nodes) == len(documents)
    content_hashes = {d.metadata["content_hash"] for d in documents}
    for hit in response.source_nodes:
        node = hit.node
        assert isinstance(node, ImageNode)
        assert Path(node.image_path).is_absolute() and Path(node.image_path).is_file()
        assert "page" in node.metadata or "timestamp" in node.metadata
        assert node.metadata[THOUGHT_KEY]  # every document thought (always), recorded in its metadata
        llm_text = node.get_content(metadata_mode=MetadataMode.LLM)
        # MockLLM answers with the prompt it was given: each source's LLM text is in it.
        assert llm_text in response.response
        for key in (*TECHNICAL_METADATA_KEYS, THOUGHT_KEY):
            assert f"{key}:" not in llm_text
    assert not any(content_hash in response.response for content_hash in content_hashes)
    assert str((tmp_path / "images").resolve()) not in response.response  # image paths are not LLM text
    assert all(f"page: {page}" in response.response for page in (1, 2, 3))
