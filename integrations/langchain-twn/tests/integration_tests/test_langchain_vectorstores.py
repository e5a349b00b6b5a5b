"""``langchain_twn.TWNChroma`` on a real embedded Chroma with the offline tiny TWN: pages and
frames from ``TWNLoader`` embedded from text and image, query images under the query budget,
cosine relevance scores, thoughts in the record metadata, plain ``Chroma`` behaviour with other
embeddings, a retrieval chain with a fake LLM, and ``TWNEmbeddings`` through pickle."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
from langchain_chroma import Chroma
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_twn import TWNChroma, TWNEmbeddings, TWNLoader
from langchain_twn.vectorstores import cosine_relevance
from llama_index.embeddings.twn import TWNEmbedding

from twn_rag import InvalidInputError
from twn_rag.loaders import LoaderSettings
from twn_rag.result_metadata import GATE_SCORE_KEY, RESULT_METADATA_KEYS, THOUGHT_KEY, THOUGHT_TOKENS_KEY
from twn_rag.samples import write_sample_pdf
from twn_rag.testing.integrations import always, never, top_ids

SMALL = LoaderSettings(max_image_pixels=64 * 64, video_fps=2.0)


@pytest.fixture(scope="module")
def documents(tmp_path_factory, sample_video) -> list[Document]:
    """Three PDF pages (text + image) and the sampled frames of a video (image, no text)."""
    folder = tmp_path_factory.mktemp("documents")
    pdf = write_sample_pdf(folder / "manual.pdf", 3)
    images = folder / "images"
    return [
        *TWNLoader(pdf, image_dir=images, settings=SMALL).load(),
        *TWNLoader(sample_video, image_dir=images, settings=SMALL).load(),
    ]


def _joint_inputs(documents: list[Document]) -> list[dict]:
    """What each document is, independently of the store: its text (if any) and its image."""
    return [
        {"image": d.metadata["image_path"], **({"text": d.page_content} if d.page_content else {})} for d in documents
    ]


def _stored(client, name: str, ids: list[str]) -> dict:
    return client.get_collection(name).get(ids=ids, include=["embeddings", "metadatas", "documents"])


# -- writing -------------------------------------------------------------------------------------
def test_from_documents_embeds_pages_and_frames_from_text_and_image(embedder, chroma_client, documents):
    assert any(d.page_content == "" for d in documents) and any(d.page_content for d in documents)
    model = TWNEmbeddings(embedder=embedder, document_budget=never())
    with pytest.raises(InvalidInputError, match="empty input"):  # what plain Chroma does with frames
        Chroma.from_documents(documents, embedding=model, client=chroma_client, collection_name="plain")

    TWNChroma.from_documents(documents, embedding=model, client=chroma_client, collection_name="joint")
    ids = [d.id for d in documents]
    stored = _stored(chroma_client, "joint", ids)
    assert stored["ids"] == ids and stored["documents"] == [d.page_content for d in documents]
    expected = embedder.encode(_joint_inputs(documents), role="document", budget=never())
    np.testing.assert_allclose(stored["embeddings"], [r.vector for r in expected], atol=1e-5)
    for document, metadata in zip(documents, stored["metadatas"]):
        assert metadata == {**document.metadata, **{k: metadata[k] for k in RESULT_METADATA_KEYS}}
        assert metadata[THOUGHT_KEY] == "" and metadata[THOUGHT_TOKENS_KEY] == 0
    assert chroma_client.get_collection("joint").configuration["hnsw"]["space"] == "cosine"


def test_thoughts_gate_scores_and_tokens_are_recorded_per_document(embedder, chroma_client, documents):
    budget = always(3)
    model = TWNEmbeddings(embedder=embedder, document_budget=budget)
    store = TWNChroma(collection_name="thoughts", embedding_function=model, client=chroma_client)
    ids = store.add_documents(documents)
    assert ids == [d.id for d in documents]
    assert budget.ledger.items_seen == budget.ledger.items_thought == len(documents)
    stored = _stored(chroma_client, "thoughts", ids)
    expected = embedder.encode(_joint_inputs(documents), role="document", budget=always(3))
    for metadata, result in zip(stored["metadatas"], expected):
        assert metadata[THOUGHT_KEY] == result.thought and metadata[THOUGHT_TOKENS_KEY] == result.thought_tokens > 0
        assert metadata[GATE_SCORE_KEY] == pytest.approx(result.gate_score, abs=1e-6)
    assert sum(m[THOUGHT_TOKENS_KEY] for m in stored["metadatas"]) == budget.ledger.thought_tokens


def test_add_images_and_update_documents_embed_as_documents_and_record_thoughts(
    embedder, chroma_client, image_files, documents
):
    model = TWNEmbeddings(embedder=embedder, document_budget=never())
    store = TWNChroma(collection_name="images", embedding_function=model, client=chroma_client)
    uris = [str(p) for p in image_files]
    ids = store.add_images(uris, metadatas=[{"name": p.name} for p in image_files])
    stored = _stored(chroma_client, "images", ids)
    expected = embedder.encode([{"image": u} for u in uris], role="document", budget=never())
    np.testing.assert_allclose(stored["embeddings"], [r.vector for r in expected], atol=1e-5)
    assert all(set(RESULT_METADATA_KEYS) <= set(m) and m["name"] for m in stored["metadatas"])

    page = documents[0]
    store.update_documents([ids[0]], [Document(page_content=page.page_content, metadata=page.metadata)])
    [updated] = _stored(chroma_client, "images", ids[:1])["embeddings"]
    [joint] = embedder.encode(_joint_inputs([page]), role="document", budget=never())
    np.testing.assert_allclose(updated, joint.vector, atol=1e-5)


def test_a_missing_image_is_named_and_nothing_is_stored(embedder, chroma_client, documents, tmp_path):
    model = TWNEmbeddings(embedder=embedder, document_budget=never())
    store = TWNChroma(collection_name="missing", embedding_function=model, client=chroma_client)
    gone = Document(page_content="a page", metadata={"image_path": str(tmp_path / "gone.png")})
    with pytest.raises(InvalidInputError, match=r"input 1 \(image .*gone.png\): image file not found"):
        store.add_documents([documents[0], gone])
    assert chroma_client.get_collection("missing").count() == 0


def test_the_constructor_is_chromas_and_an_explicit_space_is_kept(embedder, tmp_path):
    model = TWNEmbeddings(embedder=embedder)
    persisted = TWNChroma("on-disk", model, persist_directory=str(tmp_path / "chroma"))  # positional, as Chroma
    assert persisted._collection.configuration["hnsw"]["space"] == "cosine"
    chosen = TWNChroma(
        collection_name="chosen",
        embedding_function=model,
        client=persisted._client,
        collection_configuration={"hnsw": {"space": "ip"}},
    )
    legacy = TWNChroma(
        collection_name="legacy",
        embedding_function=model,
        client=persisted._client,
        collection_metadata={"hnsw:space": "ip"},
    )
    assert (
        chosen._collection.configuration["hnsw"]["space"] == legacy._collection.configuration["hnsw"]["space"] == "ip"
    )


# -- searching --------------------------------------------------------------------------------------
@pytest.fixture
def filled(embedder, chroma_client, documents):
    """A TWNChroma over the documents, its embeddings (query budget never), and what was stored."""
    model = TWNEmbeddings(embedder=embedder, query_budget=never(), document_budget=never())
    store = TWNChroma.from_documents(documents, embedding=model, client=chroma_client, collection_name="search")
    stored = _stored(chroma_client, "search", [d.id for d in documents])
    return store, model, stored


def test_query_images_use_the_query_role_and_bill_the_query_budget(embedder, filled, documents):
    store, model, stored = filled
    documents_before = copy.deepcopy(model.document_budget.ledger)
    queries_before = model.query_budget.ledger.items_seen
    frame = documents[-1].metadata["image_path"]
    hits = store.similarity_search_by_image(frame, k=3)
    assert model.document_budget.ledger == documents_before
    assert model.query_budget.ledger.items_seen == queries_before + 1
    scored = store.similarity_search_by_image_with_relevance_score(frame, k=3)
    assert model.document_budget.ledger == documents_before
    assert model.query_budget.ledger.items_seen == queries_before + 2

    [as_query] = embedder.encode([{"image": frame}], role="query", budget=never())
    [as_document] = embedder.encode([{"image": frame}], role="document", budget=never())
    assert not np.allclose(as_query.vector, as_document.vector, atol=1e-3)
    assert [h.id for h in hits] == top_ids(as_query.vector, stored["ids"], stored["embeddings"], 3)
    assert [d.id for d, _ in scored] == [h.id for h in hits]
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    for document, score in scored:
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(max(0.0, float(np.dot(by_id[document.id], as_query.vector))), abs=1e-5)


def test_relevance_scores_are_the_clipped_cosines_of_the_stored_vectors(embedder, filled, documents):
    store, _, stored = filled
    query = "What is the invoice total?"
    scored = store.similarity_search_with_relevance_scores(query, k=len(documents))
    [as_query] = embedder.encode([query], role="query", budget=never())
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    assert {d.id for d, _ in scored} == set(by_id)
    for document, score in scored:
        cosine = float(np.dot(by_id[document.id], as_query.vector) / np.linalg.norm(by_id[document.id]))
        assert 0.0 <= score <= 1.0 and score == pytest.approx(max(0.0, cosine), abs=1e-5)
    assert [d.id for d, _ in scored] == top_ids(as_query.vector, stored["ids"], stored["embeddings"], len(documents))


def test_a_collection_made_in_l2_space_still_scores_cosines(embedder, chroma_client, documents):
    chroma_client.create_collection("made-l2", embedding_function=None)  # Chroma's default space
    model = TWNEmbeddings(embedder=embedder, query_budget=never(), document_budget=never())
    store = TWNChroma(collection_name="made-l2", embedding_function=model, client=chroma_client)
    store.add_documents(documents)
    assert chroma_client.get_collection("made-l2").configuration["hnsw"]["space"] == "l2"
    stored = _stored(chroma_client, "made-l2", [d.id for d in documents])
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    query_vector = np.asarray(model.embed_query("the configuration page"))
    for document, score in store.similarity_search_with_relevance_scores("the configuration page", k=4):
        assert score == pytest.approx(max(0.0, float(np.dot(by_id[document.id], query_vector))), abs=1e-5)


def test_cosine_relevance_maps_each_space_to_the_cosine():
    a, b = np.array([0.6, 0.8]), np.array([1.0, 0.0])
    cosine = float(a @ b)
    assert cosine_relevance(1 - cosine) == pytest.approx(cosine)
    assert cosine_relevance(1 - cosine, "ip") == pytest.approx(cosine)
    assert cosine_relevance(float(np.sum((a - b) ** 2)), "l2") == pytest.approx(cosine)
    assert cosine_relevance(1.7) == 0.0 and cosine_relevance(-1e-7) == 1.0


def test_a_retrieval_chain_with_a_fake_llm_over_pages_and_frames(embedder, filled, documents):
    store, _, stored = filled
    question = "Where is the red square?"
    k = 5  # of 3 pages and the frames, so frames are among the context
    retriever = store.as_retriever(search_kwargs={"k": k})

    class PromptRecorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.prompts: list[str] = []

        def on_llm_start(self, serialized, prompts, **kwargs):
            self.prompts.extend(prompts)

    def cite(hits: list[Document]) -> str:
        return "\n".join(
            f"[{d.metadata['file_name']} {d.metadata.get('page', d.metadata.get('timestamp'))}] "
            f"{d.page_content} (image: {d.metadata['image_path']})"
            for d in hits
        )

    prompt = PromptTemplate.from_template("Answer from the context.\n{context}\nQuestion: {question}")
    chain = {"context": retriever | cite, "question": RunnablePassthrough()} | prompt | FakeListLLM(responses=["p. 1"])
    recorder = PromptRecorder()
    answer = (chain | StrOutputParser()).invoke(question, config={"callbacks": [recorder]})
    assert answer == "p. 1"

    [as_query] = embedder.encode([question], role="query", budget=never())
    expected = top_ids(as_query.vector, stored["ids"], stored["embeddings"], k)
    by_id = {d.id: d for d in documents}
    [seen] = recorder.prompts
    assert seen.endswith(f"Question: {question}")
    assert seen.count("(image: ") == k
    for document_id in expected:
        assert f"(image: {by_id[document_id].metadata['image_path']})" in seen
    assert any(by_id[i].page_content == "" for i in expected)  # a frame, retrieved from its image alone


# -- any other embedding --------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Relevance scores must be between 0 and 1")  # Chroma's own L2 scores
def test_with_other_embeddings_it_is_plain_chroma(chroma_client, documents):
    fake = DeterministicFakeEmbedding(size=6)
    texts = [Document(page_content=d.page_content or f"frame {d.id}", metadata=d.metadata, id=d.id) for d in documents]
    ours = TWNChroma.from_documents(texts, embedding=fake, client=chroma_client, collection_name="fake-ours")
    theirs = Chroma.from_documents(texts, embedding=fake, client=chroma_client, collection_name="fake-theirs")
    a = _stored(chroma_client, "fake-ours", [d.id for d in texts])
    b = _stored(chroma_client, "fake-theirs", [d.id for d in texts])
    assert a["metadatas"] == b["metadatas"] == [d.metadata for d in texts]  # nothing added
    np.testing.assert_allclose(a["embeddings"], fake.embed_documents([d.page_content for d in texts]), atol=1e-6)
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=0)
    assert (
        chroma_client.get_collection("fake-ours").configuration["hnsw"]["space"]
        == chroma_client.get_collection("fake-theirs").configuration["hnsw"]["space"]
        == "l2"
    )
    query = texts[0].page_content
    assert ours.similarity_search_with_score(query, k=3) == theirs.similarity_search_with_score(query, k=3)
    assert ours.similarity_search_with_relevance_scores(query, k=3) == theirs.similarity_search_with_relevance_scores(
        query, k=3
    )


# -- pickling ----------------------------------------------------------------------------------------
def test_twn_embeddings_pickle_to_a_working_copy_with_identical_vectors(embedder, document_texts, image_files):
    model = TWNEmbeddings(embedder=embedder, query_budget=never(), document_budget=always(3))
    model.embed_documents(document_texts[:2])
    copy_ = pickle.loads(pickle.dumps(model))
    assert copy_.embedder is not model.embedder and copy_.document_budget == model.document_budget
    np.testing.assert_array_equal(copy_.embed_documents(document_texts), model.embed_documents(document_texts))
    np.testing.assert_array_equal(copy_.embed_query("a query"), model.embed_query("a query"))
    uri = str(image_files[0])
    np.testing.assert_array_equal(copy_.embed_query_image(uri), model.embed_query_image(uri))
    llama = pickle.loads(pickle.dumps(TWNEmbedding(embedder=embedder, query_budget=never())))
    np.testing.assert_array_equal(llama.get_query_embedding("a query"), model.embed_query("a query"))


def test_image_documents_from_the_loader_have_absolute_image_paths(documents):
    assert all(Path(d.metadata["image_path"]).is_absolute() for d in documents)
