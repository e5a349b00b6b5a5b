"""``TWNEmbedding`` bound to the budgets a Chroma collection keeps (``for_chroma_collection``,
``for_twn_index``): spend committed to the collection, a ``TWNIndex`` sharing its ledger, JSON and
pickles that bind again (also in another process), and the ``IngestionPipeline`` cache, keyed on
the budgets' limits and not on what they spent."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from llama_index.core import Document
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import TextNode
from llama_index.embeddings.twn import TWNEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore

from twn_rag import BudgetLedger, ReasoningBudget
from twn_rag.index import CollectionAddress, IndexMismatchError, TWNIndex, create_collection
from twn_rag.index.budget_store import CollectionBudgets
from twn_rag.result_metadata import THOUGHT_TOKENS_KEY
from twn_rag.testing.checkpoint import build_tiny_twn_checkpoint
from twn_rag.testing.integrations import always, never

# Every document would think in "always" mode; the ratio cap lets a quarter of them.
QUARTER = ReasoningBudget(mode="always", max_think_ratio=0.25, max_thought_tokens=3)


def _spent(nodes) -> BudgetLedger:
    """What ``nodes`` (embedded as a transformation) spent, from their recorded thoughts."""
    tokens = [node.metadata[THOUGHT_TOKENS_KEY] for node in nodes]
    return BudgetLedger(len(nodes), sum(count > 0 for count in tokens), sum(tokens))


def _limits(budget: ReasoningBudget) -> dict:
    return {key: value for key, value in budget.to_dict().items() if key != "ledger"}


# -- spending the collection's budget ------------------------------------------------------------
def test_a_bound_embedding_spends_the_collections_budget_and_queries_bill_only_queries(
    embedder, chroma_client, document_texts
):
    collection = create_collection(chroma_client, "bound", embedder, document_budget=QUARTER, query_budget=never())
    assert collection.configuration["hnsw"]["space"] == "cosine"
    model = TWNEmbedding.for_chroma_collection(collection, embedder=embedder, embed_batch_size=2)
    assert model.embedder is embedder and model.budget_collection == CollectionAddress.of(collection)

    nodes = model([TextNode(text=text) for text in document_texts])
    stored = CollectionBudgets(collection)
    assert stored.read("document").ledger == _spent(nodes) == BudgetLedger(5, 1, _spent(nodes).thought_tokens)
    assert model.document_budget == stored.read("document")  # the field follows the collection

    model.get_query_embedding("Which document talks about the invoice total?")
    assert stored.read("query").ledger == BudgetLedger(items_seen=1)
    assert stored.read("document").ledger.items_seen == 5

    # Another object bound to the collection continues its ledger, and the cap holds over both.
    more = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)([TextNode(text=t) for t in document_texts])
    assert stored.read("document").ledger == BudgetLedger(10, 2, _spent(nodes + more).thought_tokens)
    assert _spent(more).items_thought == 1


def test_budgets_given_for_an_existing_collection_replace_its_limits_and_keep_its_ledger(
    embedder, chroma_client, document_texts
):
    collection = chroma_client.create_collection("plain", embedding_function=None)
    first = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)  # no budgets: the checkpoint's
    assert first.budget("document") == embedder.default_budget("document")
    first.get_text_embedding_batch(document_texts[:2])

    second = TWNEmbedding.for_chroma_collection(collection, embedder=embedder, document_budget=never())
    assert second.budget("document") == ReasoningBudget(mode="never", ledger=BudgetLedger(items_seen=2))
    assert first.budget("document").mode == "never"  # one budget, wherever it is read from
    third = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)
    assert third.budget("document").mode == "never" and third.budget("query") == embedder.default_budget()


def test_a_twn_index_and_a_bound_pipeline_share_the_index_ledger(tmp_path, embedder, document_texts):
    """The issue's scenario: an index that may not think, filled through LlamaIndex."""
    index = TWNIndex.open(
        tmp_path / "index", embedder, document_budget=ReasoningBudget(max_think_ratio=0.0, token_budget=0)
    )
    model = TWNEmbedding.for_twn_index(index, embed_batch_size=2)
    assert model.embedder is embedder and model.bound_collection.name == index.name
    pipeline = IngestionPipeline(
        transformations=[model], vector_store=ChromaVectorStore(chroma_collection=model.bound_collection)
    )
    nodes = pipeline.run(nodes=[TextNode(text=text, id_=f"n{i}") for i, text in enumerate(document_texts)])
    assert all(node.metadata[THOUGHT_TOKENS_KEY] == 0 for node in nodes)
    assert index.budget("document").ledger == BudgetLedger(items_seen=len(document_texts))

    by_directory = TWNEmbedding.for_twn_index(tmp_path / "index", embedder=embedder)
    by_directory.get_text_embedding("one more")
    assert index.budget("document").ledger == BudgetLedger(items_seen=len(document_texts) + 1)
    with pytest.raises(ValueError, match="for an index directory"):
        TWNEmbedding.for_twn_index(index, collection="other")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory, tiny_ckpt):
    """A second tiny TWN on the same backbone, with other adapters: its vectors are not comparable."""
    from twn_rag import TWNEmbedder

    checkpoint = build_tiny_twn_checkpoint(
        tmp_path_factory.mktemp("other") / "twn", backbone_dir=tiny_ckpt / "backbone", seed=1
    )
    return TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")


def test_binding_refuses_the_collection_of_another_models_index(tmp_path, embedder, other_model):
    index = TWNIndex.open(tmp_path / "index", embedder)
    with pytest.raises(IndexMismatchError, match="cannot take vectors from .*the embedding adapter"):
        TWNEmbedding.for_twn_index(index, embedder=other_model)
    assert index.budget("document") == embedder.default_budget("document")  # nothing was stored


# -- serialisation ---------------------------------------------------------------------------
def test_json_of_a_bound_embedding_holds_its_address_and_from_json_binds_again(embedder, chroma_client):
    collection = create_collection(chroma_client, "saved", embedder, document_budget=QUARTER)
    model = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)
    model.get_text_embedding_batch(["one document", "another document", "a third", "a fourth"])
    text = model.to_json()
    data = json.loads(text)
    assert data["query_budget"] is None and data["document_budget"] is None  # no stale ledger
    assert CollectionAddress(**data["budget_collection"]) == CollectionAddress.of(collection)

    stored = CollectionBudgets(collection)
    spent = stored.read("document").ledger
    assert (spent.items_seen, spent.items_thought) == (4, 1)
    stored.set_limits("document", never())  # changed since it was saved: the collection rules
    restored = TWNEmbedding.from_json(text, embedder=embedder)
    restored.get_text_embedding("a fifth")
    assert stored.read("document") == ReasoningBudget(mode="never", ledger=BudgetLedger(5, 1, spent.thought_tokens))
    assert restored.document_budget == stored.read("document")


def test_a_pickled_bound_embedding_binds_again_in_this_process_and_in_another(tmp_path, embedder, chroma_client):
    collection = create_collection(chroma_client, "pickled", embedder, document_budget=QUARTER)
    model = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)
    model.get_text_embedding_batch(["one", "two"])
    copy_ = pickle.loads(pickle.dumps(model))
    assert copy_.bound_collection is collection  # this process's handle, not a second client
    copy_.get_text_embedding_batch(["three", "four"])
    stored = CollectionBudgets(collection)
    assert stored.read("document").ledger == BudgetLedger(4, 1, stored.read("document").ledger.thought_tokens)

    saved = tmp_path / "model.pickle"
    saved.write_bytes(pickle.dumps(model))
    script = textwrap.dedent(
        """
        import pickle, sys
        import torch
        torch.set_num_threads(1)
        model = pickle.loads(open(sys.argv[1], "rb").read())
        model.get_text_embedding_batch(["five", "six", "seven", "eight"])
        model.get_query_embedding("a question")
        """
    )
    subprocess.run([sys.executable, "-c", script, str(saved)], check=True, timeout=300)
    assert stored.read("document").ledger.items_seen == 8 and stored.read("document").ledger.items_thought == 2
    assert stored.read("query").ledger.items_seen == 1


def test_to_dict_holds_the_limits_and_to_json_the_ledgers_of_an_unbound_embedding(embedder):
    budget = always(3)
    model = TWNEmbedding(embedder=embedder, document_budget=budget)
    model.get_text_embedding_batch(["one document", "another document"])
    assert model.to_dict()["document_budget"] == _limits(budget)
    assert json.loads(model.to_json())["document_budget"]["ledger"]["items_seen"] == 2
    assert TWNEmbedding.from_dict(model.to_dict(), embedder=embedder).document_budget == _limits_budget(budget)


def _limits_budget(budget: ReasoningBudget) -> ReasoningBudget:
    return ReasoningBudget(**_limits(budget))


# -- the IngestionPipeline cache ------------------------------------------------------------
@pytest.fixture
def documents(document_texts) -> list[Document]:
    return [Document(text=" ".join(document_texts), metadata={"source": "all.txt"}, id_="all")]


def _pipeline(model: TWNEmbedding, cache: IngestionCache) -> IngestionPipeline:
    return IngestionPipeline(transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0), model], cache=cache)


def test_an_identical_rerun_hits_the_pipeline_cache_and_a_changed_limit_misses_it(embedder, forward_passes, documents):
    cache = IngestionCache()
    budget = ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3)
    model = TWNEmbedding(embedder=embedder, document_budget=budget)
    first = _pipeline(model, cache).run(documents=documents)
    assert forward_passes["n"] > 0 and budget.ledger.items_seen == len(first)

    forward_passes["n"] = 0
    again = _pipeline(model, cache).run(documents=documents)  # the ledger moved; the limits did not
    fresh = _pipeline(TWNEmbedding(embedder=embedder, document_budget=_limits_budget(budget)), cache)
    from_fresh = fresh.run(documents=documents)
    assert forward_passes["n"] == 0 and budget.ledger.items_seen == len(first)
    np.testing.assert_allclose([n.embedding for n in again], [n.embedding for n in first], atol=0)
    np.testing.assert_allclose([n.embedding for n in from_fresh], [n.embedding for n in first], atol=0)

    changed = ReasoningBudget(mode="always", max_think_ratio=0.25, max_thought_tokens=3)
    _pipeline(TWNEmbedding(embedder=embedder, document_budget=changed), cache).run(documents=documents)
    assert forward_passes["n"] > 0


def test_a_bound_embedding_hits_the_cache_until_the_collections_limits_change(
    embedder, chroma_client, forward_passes, documents
):
    cache = IngestionCache()
    collection = create_collection(chroma_client, "cached", embedder, document_budget=QUARTER)
    model = TWNEmbedding.for_chroma_collection(collection, embedder=embedder)
    first = _pipeline(model, cache).run(documents=documents)
    stored = CollectionBudgets(collection)
    assert stored.read("document").ledger.items_seen == len(first)

    forward_passes["n"] = 0
    _pipeline(model, cache).run(documents=documents)
    assert forward_passes["n"] == 0 and stored.read("document").ledger.items_seen == len(first)

    stored.set_limits("document", ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3))
    _pipeline(model, cache).run(documents=documents)  # the same object: its key follows the collection
    assert forward_passes["n"] > 0 and stored.read("document").ledger.items_seen == 2 * len(first)
