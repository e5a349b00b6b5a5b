"""``langchain_twn.TWNEmbeddings`` in a real ``langchain_chroma`` store on an embedded Chroma."""

from __future__ import annotations

import numpy as np
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_twn import TWNEmbeddings

from twn_rag.result_metadata import THOUGHT_KEY
from twn_rag.testing.integrations import always, top_ids


def test_chroma_with_texts_images_and_a_retriever(embedder, chroma_client, document_texts, image_files):
    model = TWNEmbeddings(embedder=embedder, document_budget=always(3))
    store = Chroma(collection_name="docs", embedding_function=model, client=chroma_client)
    text_ids = store.add_texts(document_texts, metadatas=[{"source": f"doc-{i}"} for i in range(5)])
    text_thoughts = model.last_metadata
    image_ids = store.add_images([str(p) for p in image_files], metadatas=[{"source": p.name} for p in image_files])
    assert model.last_results and all(r.thought for r in model.last_results)
    assert model.document_budget.ledger.items_seen == 8 and model.document_budget.ledger.items_thought == 8

    # The thoughts of the texts, stored next to their vectors with Chroma's own API.
    collection = chroma_client.get_collection("docs")
    collection.update(ids=text_ids, metadatas=text_thoughts)
    stored = collection.get(include=["embeddings", "metadatas"])
    assert len(stored["ids"]) == 8
    metadata_by_id = dict(zip(stored["ids"], stored["metadatas"]))
    assert metadata_by_id[text_ids[0]]["source"] == "doc-0" and metadata_by_id[text_ids[0]][THOUGHT_KEY]
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    np.testing.assert_allclose(
        [by_id[i] for i in image_ids], model.embed_image([str(p) for p in image_files]), atol=1e-5
    )

    query = "a red square on a white page"
    expected = top_ids(model.embed_query(query), stored["ids"], stored["embeddings"], 3)
    hits = store.similarity_search(query, k=3)
    assert [h.id for h in hits] == expected
    retrieved = store.as_retriever(search_kwargs={"k": 3}).invoke(query)
    assert all(isinstance(d, Document) for d in retrieved)
    assert [d.id for d in retrieved] == expected
    by_image = store.similarity_search_by_image(str(image_files[1]), k=1)
    assert by_image[0].id == image_ids[1]
