"""Records (``twn_rag/index/records.py``): writes chunked within Chroma's max batch size, the
one result-metadata schema, and indexes written in the old one."""

import numpy as np
from support.legacy_records import LEGACY_KEYS

from twn_rag import EmbeddingResult
from twn_rag.index.records import WRITER_KEY
from twn_rag.loaders import DocumentItem
from twn_rag.result_metadata import GATE_SCORE_KEY, RESULT_METADATA_KEYS, THOUGHT_KEY, result_metadata


def test_more_items_than_chromas_max_batch(index):
    """The write path of ``add`` (``store``) with precomputed vectors: 6,001 records go through
    real Chroma in slices within its max batch size, and writing them again adds nothing."""
    max_batch = index._client.get_max_batch_size()
    n = max_batch + 540
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, index.manifest.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [
        DocumentItem(id=f"item-{i:05d}", text=f"text {i}", metadata={"source": "bulk", "page": i}) for i in range(n)
    ]
    results = [EmbeddingResult(v, None, 0, 0.0) for v in vectors]
    index.store(items, results)
    assert index.count() == n > 6000
    index.store(items, results)
    assert index.count() == n
    top = index._collection.query(query_embeddings=vectors[1234:1235], n_results=1)
    assert top["ids"][0] == ["item-01234"]
    assert index.info().items == n
    assert index.delete_source("bulk") == 0  # "bulk" is not a path under the cwd


def test_search_reads_an_index_written_in_the_old_schema(legacy_index):
    """Thoughts and gate scores of records with ``TWNIndex``'s old keys come back, in ``SearchHit``
    and in its metadata (under the current keys only)."""
    old, written = legacy_index
    hits = old.search("Configure the budget.", k=7)
    assert len(hits) == 7
    for hit in hits:
        recorded = written[hit.id]
        assert hit.thought == recorded[THOUGHT_KEY] and hit.thought
        assert hit.gate_score == recorded[GATE_SCORE_KEY]
        assert {k: hit.metadata[k] for k in RESULT_METADATA_KEYS} == {k: recorded[k] for k in RESULT_METADATA_KEYS}
        assert not LEGACY_KEYS & set(hit.metadata)


def test_records_hold_the_one_result_schema(index):
    """``store`` writes ``result_metadata``: a thought generated empty is told apart from none."""
    vectors = np.eye(2, index.manifest.dimension, dtype=np.float32)
    items = [DocumentItem(id=f"note-{i}", text=f"note {i}", metadata={"source": "notes"}) for i in range(2)]
    results = [EmbeddingResult(vectors[0], None, 0, 0.25), EmbeddingResult(vectors[1], "", 1, 0.75)]
    assert index.store(items, results, writer="writer-1") == {"note-0", "note-1"}  # both new
    stored = index._collection.get(ids=["note-0", "note-1"], include=["metadatas"])
    by_id = dict(zip(stored["ids"], stored["metadatas"]))
    for item, result in zip(items, results):
        metadata = dict(by_id[item.id])
        assert metadata.pop(WRITER_KEY) == "writer-1" and metadata.pop("twn_final") is True  # who stored it, final
        assert metadata == {"source": "notes", "modality": "text", **result_metadata(result)}
    assert index.store(items, results) == set()  # stored already: nothing new for another writer
    assert [hit.thought for hit in index.search("note", k=2)] in ([None, ""], ["", None])
