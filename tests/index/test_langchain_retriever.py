"""``TWNIndex.as_langchain_retriever`` (``twn_rag/index/langchain_retriever.py``): a retrieval
chain with a fake LLM over an index of a PDF and a video, documents with absolute image paths,
scores and the query's thought, filters, async, and an index written in the old schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from pydantic import ValidationError
from support.legacy_records import LEGACY_KEYS

from twn_rag.index.langchain_retriever import SCORE_KEY
from twn_rag.result_metadata import QUERY_RESULT_METADATA_KEYS, RESULT_METADATA_KEYS, THOUGHT_KEY, THOUGHT_USED_KEY
from twn_rag.testing.integrations import with_loop_ticks

QUESTION = "Configure the budget."
QUERY_THOUGHT_KEY, QUERY_GATE_KEY = QUERY_RESULT_METADATA_KEYS[:2]


class ChainRecorder(BaseCallbackHandler):
    """What the chain's retriever returned and the prompts its LLM received."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.documents: list[Document] = []

    def on_llm_start(self, serialized, prompts, **kwargs):
        self.prompts.extend(prompts)

    def on_retriever_end(self, documents, **kwargs):
        self.documents.extend(documents)


def _cite(documents: list[Document]) -> str:
    return "\n".join(
        f"[{d.metadata['file_name']} {d.metadata.get('page', d.metadata.get('timestamp'))}] {d.page_content}"
        for d in documents
    )


def test_retrieval_chain_with_a_fake_llm_gets_pages_frames_images_scores_and_thoughts(pdf_and_video_index):
    index = pdf_and_video_index
    retriever = index.as_langchain_retriever(k=index.count())
    assert isinstance(retriever, BaseRetriever)
    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    chain = {"context": retriever | _cite, "question": RunnablePassthrough()} | prompt | FakeListLLM(responses=["p. 2"])
    recorder = ChainRecorder()
    answer = (chain | StrOutputParser()).invoke(QUESTION, config={"callbacks": [recorder]})
    assert answer == "p. 2"

    documents = recorder.documents
    hits = index.search(QUESTION, k=index.count())
    assert [d.id for d in documents] == [h.id for h in hits]
    assert [d.metadata[SCORE_KEY] for d in documents] == [h.score for h in hits]
    [seen] = recorder.prompts
    assert seen.endswith(f"Question: {QUESTION}") and "[manual.pdf 2] Configure the budget." in seen
    assert seen.count("[clip.mp4 ") == 4
    query_thought = index.last_query.thought
    for document, hit in zip(documents, hits):
        metadata = document.metadata
        assert document.page_content == hit.text
        assert Path(metadata["image_path"]).is_absolute() and Path(metadata["image_path"]).is_file()
        assert metadata["image_path"] == hit.image_path and metadata["source"] == hit.source
        assert ("page" in metadata) != ("timestamp" in metadata)
        assert metadata[THOUGHT_KEY] == hit.thought and metadata[THOUGHT_USED_KEY] is True
        assert metadata[QUERY_THOUGHT_KEY] == query_thought and query_thought
        assert metadata[QUERY_GATE_KEY] == pytest.approx(index.last_query.gate_score, abs=1e-6)
        assert all(isinstance(value, (str, int, float, bool)) for value in metadata.values())


def test_k_and_a_filter(pdf_and_video_index):
    index = pdf_and_video_index
    frames = index.as_langchain_retriever(k=2, where={"source_type": "video"}).invoke(QUESTION)
    assert len(frames) == 2 and all(d.metadata["file_name"] == "clip.mp4" for d in frames)
    assert [d.metadata[SCORE_KEY] for d in frames] == sorted((d.metadata[SCORE_KEY] for d in frames), reverse=True)
    with pytest.raises(ValidationError):
        index.as_langchain_retriever(k=0)


async def test_ainvoke_runs_in_a_thread_and_equals_invoke(pdf_and_video_index):
    retriever = pdf_and_video_index.as_langchain_retriever(k=3)
    expected = retriever.invoke(QUESTION)
    documents, ticks = await with_loop_ticks(retriever.ainvoke(QUESTION))
    assert ticks > 0 and documents == expected


def test_an_index_written_in_the_old_schema_reads_thoughts_and_gate_scores(legacy_index):
    old, written = legacy_index
    documents = old.as_langchain_retriever(k=7).invoke(QUESTION)
    assert len(documents) == 7
    for document in documents:
        recorded = written[document.id]
        assert {k: document.metadata[k] for k in RESULT_METADATA_KEYS} == {k: recorded[k] for k in RESULT_METADATA_KEYS}
        assert not LEGACY_KEYS & set(document.metadata)
