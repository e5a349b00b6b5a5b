"""The index's ledger is exact: items counted once, when stored new, whoever stores them and
however often runs are repeated, interrupted or concurrent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from support.chroma_server import running_chroma_server

from twn_rag import ReasoningBudget
from twn_rag.index import IndexingAborted, TWNIndex
from twn_rag.index.budget_store import PENDING_KEY, CollectionBudgets
from twn_rag.result_metadata import THOUGHT_TOKENS_KEY, THOUGHT_USED_KEY
from twn_rag.samples import write_sample_pdf

PAGES_PER_FILE = 3
FILES = 4

# One writer process: opens the index (embedded, or a server with its own lock, as on another
# machine) and adds the folder; prints its report as JSON.
WRITER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from twn_rag import ReasoningBudget
    from twn_rag.index import TWNIndex
    import twn_rag.index.budget_store as budget_store

    checkpoint, index_dir, docs, url, lock = sys.argv[1:6]
    if lock != "-":  # another machine: its own lock, so only the records' writer tokens keep it exact
        budget_store.collection_lock_path = lambda collection: budget_store.Path(lock)
    index = TWNIndex.open(
        index_dir, checkpoint, chroma_url=None if url == "-" else url,
        document_budget=ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3),
    )
    report = index.add([docs], chunk_size=2, batch_size=2)
    print(json.dumps({"added": report.items_added, "failures": len(report.failures)}))
    """
)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    for number in range(FILES):
        write_sample_pdf(folder / f"part{number}.pdf", [f"Part {number}, page {p}." for p in range(PAGES_PER_FILE)])
    return folder


def _records(index) -> list[dict]:
    return index._collection.get(include=["metadatas"])["metadatas"]


def _assert_exact(index) -> None:
    """The stored ledger counts each stored record once, and every thought of them."""
    records = _records(index)
    ledger = index.budget("document").ledger
    assert ledger.items_seen == len(records) == FILES * PAGES_PER_FILE
    assert ledger.items_thought == sum(1 for m in records if m[THOUGHT_USED_KEY])
    assert ledger.thought_tokens >= sum(m[THOUGHT_TOKENS_KEY] for m in records)
    assert ledger.items_thought <= 0.5 * ledger.items_seen  # the ratio cap, against the true count
    assert json.loads(index.budgets.metadata().get(PENDING_KEY, "{}")) == {}


def _writers(tiny_ckpt, index_dir, docs, url="-", locks=("-", "-")) -> list[dict]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tiny_ckpt), str(index_dir), str(docs), url, lock],
            stdout=subprocess.PIPE,
            text=True,
        )
        for lock in locks
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * len(processes)
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def test_a_rerun_and_a_resumed_run_count_nothing_twice(tmp_path, embedder, docs):
    budget = ReasoningBudget(mode="always", max_think_ratio=0.5, max_thought_tokens=3)
    index = TWNIndex.open(tmp_path / "index", embedder, document_budget=budget)
    assert index.add([docs / "part0.pdf"]).items_added == PAGES_PER_FILE
    first = index.budget("document").ledger
    again = index.add([docs / "part0.pdf"])
    assert again.items_added == 0 and index.budget("document").ledger == first
    # A store that writes but is killed before it counts: the next writer counts its records.
    original = CollectionBudgets.finish_store

    def killed(self, writer, items_stored, items_thought):
        raise KeyboardInterrupt  # as a kill -9 between writing the records and counting them

    CollectionBudgets.finish_store = killed
    try:
        with pytest.raises((IndexingAborted, KeyboardInterrupt)):
            index.add([docs / "part1.pdf"], chunk_size=PAGES_PER_FILE)
    finally:
        CollectionBudgets.finish_store = original
    assert json.loads(index.budgets.metadata()[PENDING_KEY])  # the interrupted store is registered
    assert index.count() == 2 * PAGES_PER_FILE and index.budget("document").ledger.items_seen == PAGES_PER_FILE
    index.add([docs])
    _assert_exact(index)


def test_two_concurrent_writers_on_one_embedded_index(tmp_path, tiny_ckpt, docs):
    reports = _writers(tiny_ckpt, tmp_path / "index", docs)
    index = TWNIndex.open(tmp_path / "index")
    assert sum(r["added"] for r in reports) == index.count()  # "added" is true: nobody claims another's
    _assert_exact(index)


def test_two_writers_on_different_machines_sharing_a_chroma_server(tmp_path, tiny_ckpt, docs):
    with running_chroma_server(tmp_path / "server") as url:
        locks = [str(tmp_path / f"machine-{n}.lock") for n in range(2)]
        reports = _writers(tiny_ckpt, tmp_path / "index", docs, url=url, locks=locks)
        index = TWNIndex.open(tmp_path / "index", chroma_url=url)
        assert sum(r["added"] for r in reports) == index.count()
        _assert_exact(index)
