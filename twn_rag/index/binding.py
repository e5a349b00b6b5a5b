"""Embeddings bound to the reasoning budgets a Chroma collection keeps, so that every route
writing into the collection (``TWNIndex``, the CLI, the LlamaIndex and LangChain classes) spends
one ledger under one protocol (``twn_rag.index.budget_store``).

- ``create_collection``: a collection the twn-rag way: cosine space, vectors supplied by the
  caller, its budgets stored (``store_budgets``).
- ``CollectionAddress``: where a collection lives (database folder or server URL, tenant,
  database, name), serialisable, so that a copy of a bound object re-opens it in another process.
- ``BudgetBinding``: what a bound embedding object holds: each ``encode`` selects within the
  role's stored budget and commits its spend.

On one machine selection is exact: a bound ``encode`` holds a lock for its collection and role
from reading the stored ledger until its spend is committed, so bound processes and threads
select one after the other and a ratio cap or token budget holds across them (queries never wait
for documents: the lock is per role). Across machines sharing a server it stays approximate, as
``budget_store`` explains; ``TWNIndex`` does not take this lock.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twn_rag.budget import BudgetLedger, ReasoningBudget
from twn_rag.config import ROLES, Role
from twn_rag.index.budget_store import CollectionBudgets, budgets_in, collection_lock_path
from twn_rag.index.client import COSINE_CONFIGURATION, connect_path, connect_url, describe_client
from twn_rag.index.errors import IndexConnectionError, IndexStoreError
from twn_rag.index.locking import exclusive_lock
from twn_rag.index.manifest import IndexManifest

if TYPE_CHECKING:
    from twn_rag.embedder import EmbeddingResults, TWNEmbedder

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

# Collections this process has open, by address: a copy of a bound object made here (pickle,
# from_json) uses the same handle instead of a second client, which chromadb refuses when its
# settings differ. Keyed by process id too: a forked child must open its own.
_OPEN_COLLECTIONS: dict[tuple[int, CollectionAddress], Any] = {}


@dataclass(frozen=True)
class CollectionAddress:
    """Where a Chroma collection lives: ``path`` (an embedded database folder) or ``url`` (a
    server); neither for an in-memory client, which only the process holding it can reach.
    Credentials (a server's auth headers) are never part of it."""

    name: str
    path: str | None = None
    url: str | None = None
    tenant: str = DEFAULT_TENANT
    database: str = DEFAULT_DATABASE

    @classmethod
    def of(cls, collection) -> CollectionAddress:
        """The address of an open chromadb ``collection``."""
        client = collection._client  # chromadb has no public link from a collection to its client
        settings = client.get_settings()
        served = "fastapi" in str(settings.chroma_api_impl).lower()
        path = str(Path(settings.persist_directory).resolve()) if settings.is_persistent and not served else None
        return cls(
            name=collection.name,
            path=path,
            url=describe_client(client) if served else None,
            tenant=collection.tenant,
            database=collection.database,
        )

    def describe(self) -> str:
        return f"collection {self.name!r} at {self.path or self.url or 'an in-memory Chroma client'}"

    def open(self):
        """The collection: the handle this process already has open, else through a new client.
        ``IndexConnectionError`` when its database or server cannot be reached, ``IndexStoreError``
        when the collection no longer exists."""
        known = _OPEN_COLLECTIONS.get((os.getpid(), self))
        if known is not None:
            return known
        if self.path is None and self.url is None:
            raise IndexConnectionError(
                f"{self.describe()} lives in another process's memory; bind to a collection of a "
                "PersistentClient or a Chroma server to use it from other processes"
            )
        if self.path is not None and not Path(self.path).is_dir():
            raise IndexConnectionError(f"cannot open {self.describe()}: the database folder does not exist")
        client = connect_path(Path(self.path)) if self.path is not None else connect_url(str(self.url))
        if (self.tenant, self.database) != (DEFAULT_TENANT, DEFAULT_DATABASE):
            client.set_tenant(self.tenant, self.database)
        try:
            collection = client.get_collection(self.name, embedding_function=None)
        except Exception as exc:  # chromadb's NotFoundError or ValueError, depending on the client
            raise IndexStoreError(f"cannot open {self.describe()}: {exc}") from exc
        remember_collection(collection)
        return collection


def remember_collection(collection) -> CollectionAddress:
    """Record ``collection`` as this process's open handle for its address; returns the address."""
    address = CollectionAddress.of(collection)
    _OPEN_COLLECTIONS[(os.getpid(), address)] = collection
    return address


def _limits_only(budget: ReasoningBudget) -> ReasoningBudget:
    return dataclasses.replace(budget, ledger=BudgetLedger())


def check_collection_model(collection, embedder: TWNEmbedder) -> None:
    """Refuse (``IndexMismatchError``) an ``embedder`` other than the model of the twn-rag index
    stored in ``collection``, if it holds one: its vectors would not be comparable."""
    manifest = IndexManifest.from_metadata(CollectionBudgets(collection).metadata())
    if manifest is not None:
        manifest.check_model(embedder, CollectionAddress.of(collection).describe())


def store_budgets(
    collection,
    embedder: TWNEmbedder,
    limits: Mapping[str, ReasoningBudget | None] | None = None,
    defaults: Mapping[str, ReasoningBudget] | None = None,
) -> dict[str, ReasoningBudget]:
    """Give ``collection`` a budget per role for ``embedder`` and return them as stored.

    A budget in ``limits`` becomes its role's stored limits (the stored ledger is kept; a new
    one starts at zero). A role without one keeps its stored budget, or, when it has none, gets
    the limits of ``defaults[role]`` (default: the checkpoint's adaptive budget). Refuses
    (``IndexMismatchError``) an embedder other than the model of a twn-rag index in the collection.
    """
    check_collection_model(collection, embedder)
    budgets = CollectionBudgets(collection)
    given = {role: budget for role, budget in (limits or {}).items() if budget is not None}
    for role, budget in given.items():
        budgets.set_limits(role, budget)
    fallback = {
        role: _limits_only((defaults or {}).get(role) or embedder.default_budget(role))
        for role in ROLES
        if role not in given
    }
    return budgets.ensure(fallback)


def create_collection(
    client,
    name: str,
    embedder: TWNEmbedder,
    *,
    query_budget: ReasoningBudget | None = None,
    document_budget: ReasoningBudget | None = None,
):
    """The collection ``name`` of the chromadb ``client``, the twn-rag way: created when absent
    in cosine space with no embedding function (the vectors are ours), and with its budgets
    stored as ``store_budgets`` stores them (the budgets given become its limits, the ledger
    kept). An existing collection keeps its space (a warning says when it is not cosine)."""
    collection = client.get_or_create_collection(name, configuration=COSINE_CONFIGURATION, embedding_function=None)
    space = (collection.configuration.get("hnsw") or {}).get("space")
    if space not in (None, "cosine"):
        logger.warning("collection %r measures %s distances; twn-rag creates cosine collections", name, space)
    store_budgets(collection, embedder, {"query": query_budget, "document": document_budget})
    return collection


class BudgetBinding:
    """An embedding object's link to the budgets stored in one Chroma collection.

    ``encode`` selects within the role's stored budget and commits what it spent. A binding
    pickles as its ``address`` and re-opens the collection on first use (in this process, the
    handle already open), so copies of a bound object in other processes share the ledger.
    """

    def __init__(self, collection=None, *, address: CollectionAddress | None = None):
        if collection is not None:
            address = remember_collection(collection)
        if address is None:
            raise ValueError("a BudgetBinding needs a collection or its address")
        self.address = address
        self._collection = collection
        self._budgets: CollectionBudgets | None = None

    @classmethod
    def bind(
        cls,
        collection,
        embedder: TWNEmbedder,
        limits: Mapping[str, ReasoningBudget | None] | None = None,
        defaults: Mapping[str, ReasoningBudget] | None = None,
    ) -> tuple[BudgetBinding, dict[str, ReasoningBudget]]:
        """A binding to ``collection`` after ``store_budgets``; returns it and the stored budgets."""
        stored = store_budgets(collection, embedder, limits, defaults)
        return cls(collection), stored

    @property
    def budgets(self) -> CollectionBudgets:
        if self._budgets is None:
            if self._collection is None:
                self._collection = self.address.open()
            self._budgets = CollectionBudgets(self._collection)
        return self._budgets

    @property
    def collection(self):
        """The bound chromadb collection."""
        return self.budgets.collection

    def read(self) -> dict[str, ReasoningBudget]:
        """Every role's stored budget as of now (one read of the collection's metadata)."""
        stored = budgets_in(self.budgets.metadata())
        missing = [role for role in ROLES if role not in stored]
        if missing:
            raise IndexStoreError(f"{self.address.describe()} lost its stored {' and '.join(missing)} budget")
        return stored

    @contextmanager
    def spending(self, role: Role) -> Iterator[ReasoningBudget]:
        """``CollectionBudgets.spending(role)``, holding this machine's lock for the collection
        and role throughout, so that no other bound selection here reads the ledger meanwhile."""
        with exclusive_lock(self._spending_lock(role)), self.budgets.spending(role) as budget:
            yield budget

    def encode(
        self, embedder: TWNEmbedder, inputs: Sequence[Any], role: Role, **options: Any
    ) -> tuple[EmbeddingResults, ReasoningBudget]:
        """``embedder.encode(inputs, role=role, **options)`` under the stored budget of ``role``,
        its spend committed; returns the results and the budget as committed (limits and ledger)."""
        with self.spending(role) as budget:
            results = embedder.encode(inputs, role=role, budget=budget, **options)
        return results, budget

    def _spending_lock(self, role: Role) -> Path:
        # Beside the budget store's own lock, which its commits take (flock is not re-entrant).
        base = collection_lock_path(self.collection)
        return base.with_name(f"{base.stem}-spending-{self.collection.id}-{role}.lock")

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(address=state["address"])
