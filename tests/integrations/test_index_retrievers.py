"""A CLI-built index served to LlamaIndex and LangChain: ``twn-rag search``, the LangChain
retriever, ``TWNChroma`` opened on the index's collection and the LlamaIndex retriever give the
same scores; and ``TWNIndex``, ``TWNChroma`` and the LlamaIndex transformation write records
with the same result keys."""

from __future__ import annotations

import json
import shutil

import chromadb
import pytest
from langchain_twn import TWNChroma, TWNEmbeddings, TWNLoader
from llama_index.core.ingestion import IngestionPipeline
from llama_index.embeddings.twn import TWNEmbedding
from llama_index.readers.twn import TWNReader
from llama_index.vector_stores.chroma import ChromaVectorStore
from typer.testing import CliRunner

from twn_rag.cli import app
from twn_rag.index import TWNIndex
from twn_rag.index.langchain_retriever import SCORE_KEY
from twn_rag.result_metadata import LEGACY_INDEX_KEYS, RESULT_METADATA_KEYS
from twn_rag.samples import write_sample_pdf
from twn_rag.testing.integrations import always

QUESTION = "Configure the budget."
ITEMS = 3 + 4  # pages of the PDF, frames of the video


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, sample_video, tiny_ckpt):
    """The directory of an index built by ``twn-rag index`` from a PDF and a video."""
    folder = tmp_path_factory.mktemp("documents")
    write_sample_pdf(folder / "manual.pdf", ["Install the tool.", "Configure the budget.", "A red square."])
    shutil.copy(sample_video, folder / "clip.mp4")
    index_dir = tmp_path_factory.mktemp("cli") / "index"
    args = ["index", str(folder), "--index", str(index_dir), "--model", str(tiny_ckpt), "--max-thought-tokens", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # Queries always think, so that every route embeds the query alike whatever the ledger holds.
    TWNIndex.open(index_dir, query_budget=always())
    return index_dir


def _cli_scores(index_dir) -> tuple[dict[str, float], dict[str, str]]:
    """``twn-rag search``'s score of each hit, by image path: in full from ``--json``, and as
    the text output prints it."""
    common = ["search", QUESTION, "--index", str(index_dir), "-k", str(ITEMS)]
    as_json = CliRunner().invoke(app, [*common, "--json"])
    printed = CliRunner().invoke(app, common)
    assert as_json.exit_code == printed.exit_code == 0, as_json.output + printed.output
    hits = [json.loads(line) for line in as_json.stdout.strip().splitlines()]
    rows = [line.split("\t") for line in printed.stdout.strip().splitlines()]
    return {hit["image_path"]: hit["score"] for hit in hits}, {row[4].removeprefix("image="): row[0] for row in rows}


def test_the_cli_langchain_and_llama_index_give_the_same_scores(cli_index):
    cli, printed = _cli_scores(cli_index)
    client = chromadb.PersistentClient(path=str(cli_index / "chroma"))
    index = TWNIndex.open(cli_index, client=client)  # the index's own model, loaded as the CLI loads it
    documents = index.as_langchain_retriever(k=ITEMS).invoke(QUESTION)
    langchain = {d.metadata["image_path"]: d.metadata[SCORE_KEY] for d in documents}
    nodes = index.as_llama_index_retriever(similarity_top_k=ITEMS).retrieve(QUESTION)
    llama_index = {n.node.image_path: n.score for n in nodes}
    image_of = {d.id: d.metadata["image_path"] for d in documents}
    store = TWNChroma(
        collection_name=index.name,
        client=client,
        embedding_function=TWNEmbeddings(embedder=index.embedder, query_budget=always()),
    )
    chroma = {image_of[d.id]: 1.0 - distance for d, distance in store.similarity_search_with_score(QUESTION, k=ITEMS)}
    relevance = {image_of[d.id]: s for d, s in store.similarity_search_with_relevance_scores(QUESTION, k=ITEMS)}

    assert len(cli) == ITEMS and set(cli) == set(langchain) == set(llama_index) == set(chroma)
    routes = (cli, llama_index, chroma)
    differences = [abs(route[image] - langchain[image]) for route in routes for image in langchain]
    print(f"max |score difference| between the CLI and the framework routes: {max(differences):.3g}")
    assert max(differences) <= 1e-5
    assert all(printed[image] == f"{score:.4f}" for image, score in langchain.items())  # printed to 4 places
    assert all(relevance[image] == pytest.approx(min(1.0, max(0.0, s)), abs=1e-5) for image, s in chroma.items())
    assert index.budget("query").mode == "always"  # the store on the index's collection left its manifest alone


def test_twn_index_twn_chroma_and_the_llama_index_transformation_record_one_schema(tmp_path, embedder):
    pdf = write_sample_pdf(tmp_path / "manual.pdf", ["Install the tool.", "Configure the budget."])
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=always(), client=client)
    index.add([pdf])
    embeddings = TWNEmbeddings(embedder=embedder, document_budget=always())
    store = TWNChroma(collection_name="langchain", client=client, embedding_function=embeddings)
    store.add_documents(TWNLoader(pdf, image_dir=tmp_path / "pages", settings=index.manifest.loader).load())
    nodes_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("llama", embedding_function=None))
    pipeline = IngestionPipeline(
        transformations=[TWNEmbedding(embedder=embedder, document_budget=always())], vector_store=nodes_store
    )
    pipeline.run(documents=TWNReader(image_dir=tmp_path / "nodes", settings=index.manifest.loader).load_data(pdf))

    records = {
        name: client.get_collection(name).get(include=["metadatas"]) for name in (index.name, "langchain", "llama")
    }
    schemas = set()
    for name, stored in records.items():
        assert len(stored["ids"]) == 2, name
        for metadata in stored["metadatas"]:
            assert not set(LEGACY_INDEX_KEYS.values()) & set(metadata), name
            schemas.add(tuple((key, type(metadata[key])) for key in RESULT_METADATA_KEYS))
            assert metadata["twn_thought_used"] is True and metadata["twn_thought_tokens"] > 0
    assert schemas == {tuple(zip(RESULT_METADATA_KEYS, (str, float, int, bool)))}
    # The same page embedded from the same text and pixels records the same result in both stores.
    by_page = {
        name: {m["page"]: {k: m[k] for k in RESULT_METADATA_KEYS} for m in stored["metadatas"]}
        for name, stored in records.items()
    }
    for page in (1, 2):
        ours, theirs = by_page[index.name][page], by_page["langchain"][page]
        assert ours.pop("twn_gate_score") == pytest.approx(theirs.pop("twn_gate_score"), abs=1e-5)
        assert ours == theirs
