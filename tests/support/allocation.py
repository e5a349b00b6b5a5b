"""What the global budget allocation tests share: a small corpus, the thinkers the budget must
choose (computed independently of ``TWNIndex``), an index's state, and a writer process that
``kill -9``s itself at a chosen point of ``add``."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twn_rag import ReasoningBudget
from twn_rag.loaders import FileRef, iter_file_items
from twn_rag.samples import write_sample_pdf

FILES = 4
PAGES_PER_FILE = 3
ITEMS = FILES * PAGES_PER_FILE
RATIO = 0.4
TOKENS = 3


def budget(**limits) -> ReasoningBudget:
    """Adaptive with every item a candidate: the ratio cap decides who thinks."""
    return ReasoningBudget(**{"threshold": 0.0, "max_think_ratio": RATIO, "max_thought_tokens": TOKENS, **limits})


def write_corpus(folder: Path) -> list[Path]:
    return [
        write_sample_pdf(folder / f"part{n}.pdf", [f"Part {n}: page {p} about topic {n * p}." for p in range(3)])
        for n in range(FILES)
    ]


def expected_thinkers(embedder, files: list[Path], loader, ratio: float, threshold: float = 0.0) -> set[str]:
    """The ids that must think: one no-think pass per item (batches of one), candidates at or
    above ``threshold``, best gate score first (ties by id), ``floor(ratio * items)`` of them."""
    items = [item for path in files for item in iter_file_items(FileRef.describe(path), loader)]
    scores = {
        item.id: embedder.encode([item.to_input()], role="document", budget=ReasoningBudget(mode="never"))[0].gate_score
        for item in items
    }
    ranked = sorted((i for i, s in scores.items() if s >= threshold), key=lambda i: (-scores[i], i))
    return set(ranked[: math.floor(ratio * len(items) + 1e-9)])


@dataclass
class IndexState:
    ids: set[str]
    thinkers: set[str]
    vectors: dict[str, np.ndarray]
    final: bool
    ledger: tuple[int, int, int]
    record_tokens: int


def state_of(index) -> IndexState:
    found = index._collection.get(include=["metadatas", "embeddings"])
    assert len(found["ids"]) == len(set(found["ids"]))
    metadatas = dict(zip(found["ids"], found["metadatas"]))
    ledger = index.budget("document").ledger
    return IndexState(
        ids=set(found["ids"]),
        thinkers={i for i, m in metadatas.items() if m["twn_thought_used"]},
        vectors={i: np.asarray(v) for i, v in zip(found["ids"], found["embeddings"])},
        final=all(m.get("twn_final", True) for m in metadatas.values()),
        ledger=(ledger.items_seen, ledger.items_thought, ledger.thought_tokens),
        record_tokens=sum(m["twn_thought_tokens"] for m in metadatas.values()),
    )


def assert_same_index(state: IndexState, reference: IndexState, atol: float = 1e-4) -> None:
    assert state.ids == reference.ids and state.thinkers == reference.thinkers
    assert state.final and reference.final
    for item_id, vector in state.vectors.items():
        np.testing.assert_allclose(vector, reference.vectors[item_id], atol=atol)


# Adds the folder to the index and kill -9s itself at the ``nth`` call of a TWNIndex method
# (after the original ran), as a crash at that point would.
KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, json
    import torch
    torch.set_num_threads(1)
    from twn_rag import ReasoningBudget, TWNEmbedder
    from twn_rag.index import TWNIndex

    checkpoint, index_dir, docs, method, nth, executor, address, limits = sys.argv[1:9]
    original = getattr(TWNIndex, method)
    calls = []

    def killing(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(TWNIndex, method, killing)
    embedder = TWNEmbedder.from_pretrained(checkpoint, device="cpu", dtype="float32")  # as the tests' embedder
    index = TWNIndex.open(index_dir, embedder, document_budget=ReasoningBudget(**json.loads(limits)))
    extra = {"executor": "ray", "ray_address": address} if executor == "ray" else {}
    index.add([docs], chunk_size=2, batch_size=2, **extra)
    """
)


def run_killed_writer(checkpoint, index_dir, docs, method: str, nth: int, limits: dict, executor="local", address=""):
    """Run ``KILLED_WRITER``; asserts it died of SIGKILL (the kill point was reached)."""
    import json

    process = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_WRITER,
            str(checkpoint),
            str(index_dir),
            str(docs),
            method,
            str(nth),
            executor,
            address,
            json.dumps(limits),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == -9, process.stderr[-3000:]
