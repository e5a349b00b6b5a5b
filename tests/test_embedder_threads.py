"""``TWNEmbedder.encode`` called from several threads at once (as the integrations' async
methods do) gives the results of calling it one at a time: passes switch the adapter of the
one shared backbone, so calls must not interleave."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from twn_rag import ReasoningBudget


def test_concurrent_encodes_match_sequential_ones(embedder):
    batches = [[f"question {i} about invoices", f"document {i} about the capital of France"] for i in range(8)]
    # Embedding-only calls mixed with thinking ones: the reasoning adapter of one call must
    # never be active during another call's embedding pass.
    modes = ["always" if i % 2 else "never" for i in range(len(batches))]

    def run(batch, mode):
        return embedder.encode(batch, role="document", budget=ReasoningBudget(mode=mode, max_thought_tokens=8))

    sequential = [run(batch, mode) for batch, mode in zip(batches, modes)]
    embedder.thought_cache.clear()
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        concurrent = list(pool.map(run, batches, modes))
    for got, expected in zip(concurrent, sequential):
        np.testing.assert_allclose([r.vector for r in got], [r.vector for r in expected], atol=1e-5)
        assert [r.thought for r in got] == [r.thought for r in expected]
