"""Fixtures of the ``twn_rag.index`` tests."""

import math

import pytest
from support.allocation import ITEMS, RATIO, budget, expected_thinkers, state_of, write_corpus
from support.index_damage import copy_index, release_chroma, write_documents
from support.legacy_records import copy_in_legacy_schema

from twn_rag import ReasoningBudget
from twn_rag.index import TWNIndex
from twn_rag.samples import write_sample_pdf
from twn_rag.testing.integrations import always


@pytest.fixture
def index(tmp_path, embedder):
    """A new embedded index on the tiny TWN; its documents think at most 4 tokens."""
    return TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(max_thought_tokens=4))


@pytest.fixture(scope="module")
def pdf_and_video_index(tmp_path_factory, embedder, sample_video):
    """An index of a 3-page PDF and a 2 s video (4 frames) in which every document and every
    query thinks (at most 4 tokens), so that thoughts are deterministic and never missing."""
    folder = tmp_path_factory.mktemp("pdf-and-video")
    write_sample_pdf(folder / "manual.pdf", ["Install the tool.", "Configure the budget.", "A red square."])
    index = TWNIndex.open(folder / "index", embedder, document_budget=always(), query_budget=always())
    report = index.add([folder / "manual.pdf", sample_video])
    assert report.ok and report.items_added == 3 + 4
    return index


@pytest.fixture(scope="module")
def legacy_index(pdf_and_video_index, tmp_path_factory, embedder):
    """``(index, written)``: the records of ``pdf_and_video_index`` in an index written in the old
    metadata schema, and the current metadata of each record, by id."""
    index = TWNIndex.open(tmp_path_factory.mktemp("legacy"), embedder, document_budget=always(), query_budget=always())
    written = copy_in_legacy_schema(pdf_and_video_index._collection, index._collection)
    assert "thought" in index._collection.get(limit=1)["metadatas"][0]  # the old keys, really
    return index, written


@pytest.fixture(scope="session")
def built_index_dir(tmp_path_factory, embedder, sample_video):
    """An index (default collection) of a 3-page PDF, a 2 s video (4 frames) and an image, in
    ``<dir>/index`` beside its documents in ``<dir>/docs``, released by this process. Copy it
    (``index_copy``) to damage it."""
    root = tmp_path_factory.mktemp("built")
    docs = write_documents(root / "docs", sample_video)
    index = TWNIndex.open(root / "index", embedder, document_budget=ReasoningBudget(max_thought_tokens=4))
    assert index.add([docs]).items_added == 3 + 4 + 1
    release_chroma(root / "index")
    return root / "index"


@pytest.fixture
def index_copy(built_index_dir, tmp_path):
    """A fresh copy of ``built_index_dir`` (its documents stay where they are)."""
    return copy_index(built_index_dir, tmp_path / "index")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, embedder, corpus):
    """The state of the corpus indexed in one uninterrupted run, and the thinkers it must have."""
    folder, files = corpus
    index = TWNIndex.open(tmp_path_factory.mktemp("reference"), embedder, document_budget=budget())
    report = index.add([folder])
    expected = expected_thinkers(embedder, files, index.manifest.loader, RATIO)
    assert len(expected) == math.floor(RATIO * ITEMS) == 4
    assert report.items_thought == len(expected)
    return state_of(index), expected
