"""The budget lives with the collection in every route: ``TWNChroma(..., bind_budget=True)`` and
bound ``TWNEmbeddings`` spend the budgets a Chroma collection stores, shared with an index the
CLI made, and with LlamaIndex writers in other processes, one after the other and at once."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chromadb
import pytest
from langchain_chroma import Chroma
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_twn import TWNChroma, TWNEmbeddings
from typer.testing import CliRunner

from twn_rag import BudgetLedger, ReasoningBudget
from twn_rag.cli import app
from twn_rag.index import CollectionAddress, create_collection
from twn_rag.index.budget_store import CollectionBudgets
from twn_rag.result_metadata import THOUGHT_TOKENS_KEY
from twn_rag.samples import write_sample_pdf
from twn_rag.testing.integrations import always, never

# Every document would think in "always" mode; the ratio cap lets a quarter of them.
QUARTER = ReasoningBudget(mode="always", max_think_ratio=0.25, max_thought_tokens=3)
CALLS_PER_WRITER = 8  # of 2 documents each: a ledger that moves in small steps, which concurrency interleaves


def _stored_spend(collection) -> BudgetLedger:
    """What the records in ``collection`` spent, from the thoughts they recorded."""
    tokens = [metadata[THOUGHT_TOKENS_KEY] for metadata in collection.get(include=["metadatas"])["metadatas"]]
    return BudgetLedger(len(tokens), sum(count > 0 for count in tokens), sum(tokens))


# -- an index made by the CLI ---------------------------------------------------------------------
def test_langchain_writes_into_a_cli_index_that_may_not_think_do_not_think(tmp_path, tiny_ckpt, embedder):
    """The issue's scenario: ``think_ratio 0.0, token_budget 0``, then LangChain's ``add_texts``."""
    index = tmp_path / "index"
    pdf = write_sample_pdf(tmp_path / "manual.pdf", 2)
    result = CliRunner().invoke(
        app,
        [
            "index",
            str(pdf),
            "--index",
            str(index),
            "--model",
            str(tiny_ckpt),
            "--think-ratio",
            "0",
            "--token-budget",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    client = chromadb.PersistentClient(path=str(index / "chroma"))
    stored = CollectionBudgets(client.get_collection("twn"))
    assert stored.read("document").ledger == BudgetLedger(items_seen=2)

    # An embeddings object that would think about everything: the index's budget wins.
    embeddings = TWNEmbeddings(embedder=embedder, document_budget=always(4))
    store = TWNChroma(collection_name="twn", client=client, embedding_function=embeddings, bind_budget=True)
    ids = store.add_texts(["The invoice total includes tax.", "Paris is the capital of France."])
    assert all(m[THOUGHT_TOKENS_KEY] == 0 for m in client.get_collection("twn").get(ids=ids)["metadatas"])
    assert stored.read("document").ledger == BudgetLedger(items_seen=4)
    assert embeddings.document_budget.max_think_ratio == 0.0 and embeddings.document_budget.token_budget == 0

    # Plain Chroma with embeddings bound to the index directory keeps the budget as well.
    bound = TWNEmbeddings.for_twn_index(index, embedder=embedder)
    Chroma(collection_name="twn", client=client, embedding_function=bound).add_texts(["A third text."])
    assert stored.read("document").ledger == BudgetLedger(items_seen=5)


# -- TWNChroma and bound TWNEmbeddings in this process ---------------------------------------------
def test_bind_budget_binds_the_embeddings_in_place_and_a_new_collection_takes_their_limits(
    embedder, chroma_client, document_texts
):
    embeddings = TWNEmbeddings(embedder=embedder, document_budget=QUARTER, query_budget=never(), batch_size=2)
    store = TWNChroma(collection_name="bound", client=chroma_client, embedding_function=embeddings, bind_budget=True)
    collection = chroma_client.get_collection("bound")
    assert embeddings.budget_collection == CollectionAddress.of(collection) and embeddings.bound_collection is not None
    assert collection.configuration["hnsw"]["space"] == "cosine"
    stored = CollectionBudgets(collection)
    assert stored.read("document") == QUARTER and stored.read("query") == never()

    store.add_texts(document_texts)
    assert (
        stored.read("document").ledger
        == _stored_spend(collection)
        == BudgetLedger(5, 1, _stored_spend(collection).thought_tokens)
    )
    assert embeddings.document_budget == stored.read("document")

    # A collection that has budgets keeps them: another object's budgets do not replace them.
    TWNChroma.from_texts(
        ["one more text"],
        embedding=TWNEmbeddings(embedder=embedder, document_budget=never()),
        client=chroma_client,
        collection_name="bound",
        bind_budget=True,
    )
    assert stored.read("document").mode == "always" and stored.read("document").ledger.items_seen == 6

    with pytest.raises(ValueError, match="bound to collection 'bound'"):
        TWNChroma(collection_name="elsewhere", client=chroma_client, embedding_function=embeddings, bind_budget=True)
    with pytest.raises(ValueError, match="bound to collection 'bound'"):
        TWNChroma(collection_name="elsewhere", client=chroma_client, embedding_function=embeddings)
    with pytest.raises(ValueError, match="got DeterministicFakeEmbedding"):
        TWNChroma(
            collection_name="fake",
            client=chroma_client,
            embedding_function=DeterministicFakeEmbedding(size=4),
            bind_budget=True,
        )


def test_query_texts_and_images_bill_the_collections_query_budget_only(embedder, chroma_client, image_files):
    embeddings = TWNEmbeddings(embedder=embedder, document_budget=never(), query_budget=always(2))
    store = TWNChroma(collection_name="queries", client=chroma_client, embedding_function=embeddings, bind_budget=True)
    store.add_images([str(path) for path in image_files])
    stored = CollectionBudgets(chroma_client.get_collection("queries"))
    documents = stored.read("document").ledger
    store.similarity_search("a red square", k=2)
    store.similarity_search_by_image(str(image_files[0]), k=2)
    store.similarity_search_by_image_with_relevance_score(str(image_files[1]), k=2)
    assert stored.read("document").ledger == documents == BudgetLedger(items_seen=3)
    assert stored.read("query").ledger.items_seen == stored.read("query").ledger.items_thought == 3


def test_a_bound_embeddings_dumps_its_address_and_pickles_to_a_copy_of_the_same_ledger(embedder, chroma_client):
    collection = create_collection(chroma_client, "pickled", embedder, document_budget=QUARTER)
    embeddings = TWNEmbeddings.for_chroma_collection(collection, embedder=embedder)
    embeddings.embed_documents(["one", "two"])
    dump = embeddings.model_dump()
    assert dump["query_budget"] is None and dump["document_budget"] is None  # no stale ledger
    assert CollectionAddress(**dump["budget_collection"]) == CollectionAddress.of(collection)

    copy_ = pickle.loads(pickle.dumps(embeddings))
    copy_.embed_documents(["three", "four"])
    rebuilt = TWNEmbeddings(**dump, embedder=embedder)  # binds again, leaving the stored limits alone
    rebuilt.embed_documents(["five", "six", "seven", "eight"])
    stored = CollectionBudgets(collection).read("document")
    assert stored == rebuilt.document_budget and _limits(stored) == _limits(QUARTER)
    assert (stored.ledger.items_seen, stored.ledger.items_thought) == (8, 2)


def _limits(budget: ReasoningBudget) -> dict:
    return {key: value for key, value in budget.to_dict().items() if key != "ledger"}


def test_reset_collection_keeps_the_limits_and_starts_a_new_ledger(embedder, chroma_client, document_texts):
    embeddings = TWNEmbeddings(embedder=embedder, document_budget=QUARTER)
    store = TWNChroma(collection_name="reset", client=chroma_client, embedding_function=embeddings, bind_budget=True)
    store.add_texts(document_texts)
    store.reset_collection()
    assert store._collection.count() == 0
    stored = CollectionBudgets(chroma_client.get_collection("reset"))
    assert stored.read("document") == QUARTER
    store.add_texts(document_texts[:4])
    assert stored.read("document").ledger == _stored_spend(store._collection)
    assert stored.read("document").ledger.items_seen == 4


# -- LlamaIndex and LangChain writers in separate processes ------------------------------------------
# One writer process: a route (LlamaIndex: an IngestionPipeline with a bound TWNEmbedding into a
# ChromaVectorStore; LangChain: TWNChroma with bind_budget=True), CALLS calls of 2 documents with
# ids of its own, then one query. Once set up it creates <sync>/<route>.ready and writes only
# when <sync>/go exists, so that writers started together really write at the same time.
WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    import chromadb
    import torch

    from twn_rag import TWNEmbedder

    torch.set_num_threads(1)
    route, checkpoint, database, name, calls, sync = sys.argv[1:7]
    calls, sync = int(calls), Path(sync)
    embedder = TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")
    client = chromadb.PersistentClient(path=database)
    batches = [
        [(f"{route}-{call}-{i}", f"{route} document {call}.{i}: the total is {7 * call + i} euros") for i in range(2)]
        for call in range(calls)
    ]
    if route == "llama_index":
        from llama_index.core.ingestion import IngestionPipeline
        from llama_index.core.schema import TextNode
        from llama_index.embeddings.twn import TWNEmbedding
        from llama_index.vector_stores.chroma import ChromaVectorStore

        collection = client.get_collection(name)
        model = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)
        store = ChromaVectorStore(chroma_collection=collection)
        pipeline = IngestionPipeline(transformations=[model], vector_store=store)
        (sync / f"{route}.ready").touch()
        while not (sync / "go").exists():
            time.sleep(0.01)
        for batch in batches:
            pipeline.run(nodes=[TextNode(text=text, id_=id_) for id_, text in batch])
        model.get_query_embedding("what is the total?")
    else:
        from langchain_twn import TWNChroma, TWNEmbeddings

        embeddings = TWNEmbeddings(embedder=embedder)
        store = TWNChroma(collection_name=name, client=client, embedding_function=embeddings, bind_budget=True)
        (sync / f"{route}.ready").touch()
        while not (sync / "go").exists():
            time.sleep(0.01)
        for batch in batches:
            store.add_texts([text for _, text in batch], ids=[id_ for id_, _ in batch])
        store.similarity_search("what is the total?", k=1)
    """
)


def _run_writers(routes: list[str], tiny_ckpt, database: Path, client) -> list[BudgetLedger]:
    """Start one writer per route, let them write together once all are set up, and wait for them;
    returns every document ledger seen in the collection meanwhile (read as often as possible)."""
    sync = database.parent / f"sync-{'-'.join(routes)}"
    sync.mkdir()
    arguments = [str(tiny_ckpt), str(database), "quarter", str(CALLS_PER_WRITER), str(sync)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, route, *arguments]) for route in routes]
    deadline = time.monotonic() + 600
    while not all((sync / f"{route}.ready").exists() for route in routes):
        assert time.monotonic() < deadline and all(writer.poll() is None for writer in writers), "a writer failed"
        time.sleep(0.05)
    stored = CollectionBudgets(client.get_collection("quarter"))
    (sync / "go").touch()
    seen = []
    while any(writer.poll() is None for writer in writers) and time.monotonic() < deadline:
        seen.append(stored.read("document").ledger)
    assert [writer.wait(timeout=600) for writer in writers] == [0] * len(writers)
    return seen


def _within_the_cap(ledgers: list[BudgetLedger]) -> bool:
    return all(ledger.items_thought <= 0.25 * ledger.items_seen for ledger in ledgers)


@pytest.fixture
def quarter_collection(tmp_path, embedder):
    """A new collection whose documents may think a quarter of the time, its database folder and client."""
    database = tmp_path / "chroma"
    client = chromadb.PersistentClient(path=str(database))
    create_collection(client, "quarter", embedder, document_budget=QUARTER, query_budget=never())
    return database, client


def _check_the_ledger_is_what_the_records_spent(client, documents: int) -> None:
    collection = client.get_collection("quarter")
    stored = CollectionBudgets(collection)
    ledger = stored.read("document").ledger
    assert ledger == _stored_spend(collection) and ledger.items_seen == documents
    assert ledger.items_thought == math.floor(0.25 * documents)  # capped, never above
    assert ledger.thought_tokens > 0
    assert stored.read("query").ledger == BudgetLedger(items_seen=2)  # one query per writer, no document billed


def test_llama_index_then_langchain_in_separate_processes_share_one_capped_ledger(quarter_collection, tiny_ckpt):
    database, client = quarter_collection
    seen = _run_writers(["llama_index"], tiny_ckpt, database, client)
    first = CollectionBudgets(client.get_collection("quarter")).read("document").ledger
    assert first.items_seen == 2 * CALLS_PER_WRITER and first.items_thought == math.floor(0.25 * first.items_seen)

    seen += _run_writers(["langchain"], tiny_ckpt, database, client)  # a new process continues the ledger
    assert len({ledger.items_seen for ledger in seen}) > 4 and _within_the_cap(seen)
    _check_the_ledger_is_what_the_records_spent(client, 4 * CALLS_PER_WRITER)


def test_llama_index_and_langchain_at_once_in_separate_processes_share_one_capped_ledger(quarter_collection, tiny_ckpt):
    database, client = quarter_collection
    seen = _run_writers(["llama_index", "langchain"], tiny_ckpt, database, client)
    # Watched while both wrote: every ledger the collection held respected the cap, not only the last one.
    assert len({ledger.items_seen for ledger in seen}) > 4 and _within_the_cap(seen)
    _check_the_ledger_is_what_the_records_spent(client, 4 * CALLS_PER_WRITER)
