"""Records (``twn_rag/index/records.py``): writes chunked within Chroma's max batch size."""

import numpy as np

from twn_rag import EmbeddingResult
from twn_rag.loaders import DocumentItem


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
