"""The budgets a Chroma collection keeps: read fresh, committed exactly by concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from support.chroma_server import running_chroma_server

from twn_rag.budget import BudgetLedger, ReasoningBudget
from twn_rag.index.budget_store import VERSION_KEY, CollectionBudgets
from twn_rag.index.errors import IndexStoreError

COMMITS_PER_WRITER = 25

# One writer: opens the collection itself (a separate process, as another route would) and
# commits one item seen, one thought and 3 tokens, COMMITS times.
WRITER = textwrap.dedent(
    """
    import sys
    import chromadb
    from chromadb.config import Settings
    from twn_rag.budget import BudgetLedger
    from twn_rag.index.budget_store import CollectionBudgets

    where, name, commits, lock = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    settings = Settings(anonymized_telemetry=False)
    if where.startswith("http://"):
        host, port = where.removeprefix("http://").split(":")
        client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(path=where, settings=settings)
    store = CollectionBudgets(client.get_collection(name), lock_path=lock if lock != "-" else None)
    for _ in range(commits):
        store.commit("document", BudgetLedger(), BudgetLedger(items_seen=1, items_thought=1, thought_tokens=3))
    """
)


def _client(path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def _new_collection(client, name: str = "budgets"):
    collection = client.create_collection(name, metadata={"owner": "someone"}, embedding_function=None)
    store = CollectionBudgets(collection)
    store.ensure({"document": ReasoningBudget(max_think_ratio=0.25), "query": ReasoningBudget(mode="never")})
    return store


def _run_writers(where: str, name: str, locks: list[str]) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, where, name, str(COMMITS_PER_WRITER), lock]) for lock in locks
    ]
    assert [w.wait(timeout=300) for w in writers] == [0] * len(writers)


def test_ensure_read_commit_and_a_fresh_handle_continue_one_ledger(tmp_path):
    store = _new_collection(_client(tmp_path / "db"))
    assert store.read("document").max_think_ratio == 0.25 and store.read("query").mode == "never"
    store.commit("document", BudgetLedger(), BudgetLedger(items_seen=4, items_thought=1, thought_tokens=7))
    with store.spending("document") as budget:
        budget.select([0.9, 0.1, 0.2, 0.3])  # 4 more seen, the ratio allows 2 of 8 in all: 1 more
        budget.record([5])

    reopened = CollectionBudgets(_client(tmp_path / "db").get_collection("budgets"))
    assert reopened.read("document").ledger == BudgetLedger(items_seen=8, items_thought=2, thought_tokens=12)
    assert reopened.metadata()["owner"] == "someone"  # keys of others are kept
    # New limits keep what was spent; ensure does not reset a stored budget.
    reopened.set_limits("document", ReasoningBudget(mode="always", token_budget=100))
    reopened.ensure({"document": ReasoningBudget(), "query": ReasoningBudget()})
    stored = store.read("document")
    assert stored.mode == "always" and stored.token_budget == 100 and stored.ledger.items_seen == 8


def test_a_collection_without_budgets_is_a_clear_error(tmp_path):
    collection = _client(tmp_path / "db").create_collection("plain", embedding_function=None)
    with pytest.raises(IndexStoreError, match="no stored document budget"):
        CollectionBudgets(collection).read("document")


def test_spend_inside_a_failing_block_is_still_committed(tmp_path):
    store = _new_collection(_client(tmp_path / "db"))
    with pytest.raises(RuntimeError), store.spending("query") as budget:
        budget.select([0.5])
        raise RuntimeError("the embedding failed after selecting")
    assert store.read("query").ledger.items_seen == 1


def test_processes_on_one_machine_lose_no_commit(tmp_path):
    store = _new_collection(_client(tmp_path / "db"))
    _run_writers(str(tmp_path / "db"), "budgets", ["-", "-", "-"])
    total = 3 * COMMITS_PER_WRITER
    assert store.read("document").ledger == BudgetLedger(total, total, 3 * total)
    assert store.metadata()[VERSION_KEY] == 1 + total  # ensure, then one write per commit


def test_writers_on_different_machines_sharing_a_server_lose_no_commit(tmp_path):
    """Each writer has its own lock (as on another machine): only verification keeps them exact."""
    import chromadb

    with running_chroma_server(tmp_path / "server") as url:
        host, port = url.removeprefix("http://").split(":")
        store = _new_collection(chromadb.HttpClient(host=host, port=int(port)))
        _run_writers(url, "budgets", [str(tmp_path / f"machine-{n}.lock") for n in range(3)])
        total = 3 * COMMITS_PER_WRITER
        assert store.read("document").ledger == BudgetLedger(total, total, 3 * total)
