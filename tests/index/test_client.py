"""A TWNIndex and the frameworks' Chroma stores on one database, in one process; processes
creating one embedded database at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from twn_rag import ReasoningBudget
from twn_rag.index import TWNIndex
from twn_rag.index.directory import DATABASE_FILENAME
from twn_rag.samples import write_sample_pdf


@pytest.fixture
def pdf(tmp_path):
    return write_sample_pdf(tmp_path / "manual.pdf", ["Install the tool.", "Configure the budget."])


def _langchain_store(persist_directory, collection="twn"):
    from langchain_chroma import Chroma

    return Chroma(collection_name=collection, persist_directory=str(persist_directory))


def test_index_first_then_a_langchain_store_on_the_same_database(tmp_path, embedder, pdf):
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(mode="never"))
    index.add([pdf])
    store = _langchain_store(tmp_path / "index" / "chroma")  # raised "different settings" before
    assert store._collection.count() == index.count() == 2


def test_a_langchain_store_first_then_the_index_on_the_same_database(tmp_path, embedder, pdf):
    store = _langchain_store(tmp_path / "index" / "chroma", collection="other")
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=ReasoningBudget(mode="never"))
    index.add([pdf])
    assert index.count() == 2 and store._collection.count() == 0


def test_open_on_a_given_client(tmp_path, embedder, pdf):
    import chromadb

    client = chromadb.EphemeralClient()
    index = TWNIndex.open(tmp_path / "index", embedder, client=client, document_budget=ReasoningBudget(mode="never"))
    index.add([pdf])
    assert client.get_collection("twn").count() == 2
    assert not (tmp_path / "index" / "chroma").exists()  # only the page images live in index_dir
    assert len(list(index.images_dir.iterdir())) == 2
    again = TWNIndex.open(tmp_path / "index", client=client)
    assert again.count() == 2 and again.search("Install the tool.", k=1)[0].page == 1
    with pytest.raises(ValueError, match="not both"):
        TWNIndex.open(tmp_path / "index", client=client, chroma_url="http://127.0.0.1:1")


OPEN_AND_CREATE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from twn_rag.index.client import connect_path\n"
    "connect_path(Path(sys.argv[1])).get_or_create_collection('pages')\n"
)


def test_processes_creating_one_new_database_at_once_all_succeed(tmp_path):
    """chromadb's schema setup races when several processes create one database at once (one
    failed with "table collections already exists" in 1 of 48 such openings here); the
    creation is serialised, so every process opens it."""
    for attempt in range(3):
        path = tmp_path / f"db{attempt}" / "chroma"
        processes = [
            subprocess.Popen([sys.executable, "-c", OPEN_AND_CREATE, str(path)], stderr=subprocess.PIPE, text=True)
            for _ in range(6)
        ]
        errors = [process.communicate(timeout=120)[1] for process in processes]
        assert [process.returncode for process in processes] == [0] * len(processes), errors
        assert (path / DATABASE_FILENAME).is_file()
