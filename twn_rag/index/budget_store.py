"""The reasoning budgets a Chroma collection keeps in its metadata, read fresh and committed
under one protocol by every route that writes into the collection (``TWNIndex``, the CLI, and
the LlamaIndex and LangChain classes bound to it).

Keys (scalars only: a list value crashes Chroma's core, so structured values are JSON text):

- ``twn_budget_<role>``: the role's ``ReasoningBudget`` (limits and ledger) as JSON;
- ``twn_budget_version``: incremented by every commit;
- ``twn_budget_commits``: JSON list of the last ``COMMIT_LOG_LENGTH`` commit tokens;
- ``twn_budget_pending``: JSON map of stores under way (``begin_store``), so that the items of
  a writer killed between writing records and counting them are counted by the next writer.

Chroma has no transactions, and ``Collection.modify`` replaces the whole metadata, so a
commit is a read-modify-write:

1. processes on one machine serialise on a lock file (beside the embedded database, or in the
   temp folder for a server), so they never lose each other's updates;
2. writers on other machines sharing a server are caught by verification: each commit adds a
   fresh token to the log and, after ``settle_s``, reads the metadata back; a token missing
   from the log means another writer overwrote the commit without seeing it, and the spend is
   applied again on top of what is stored now. A commit is therefore never lost, and never
   counted twice (a writer that saw it carries its token forward).

What stays approximate across machines is selection, not accounting: two writers that read
the same ledger at the same moment may each use the slack left under a ratio cap once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from twn_rag.budget import BudgetLedger, ReasoningBudget
from twn_rag.config import ROLES
from twn_rag.index.errors import IndexStoreError
from twn_rag.index.locking import exclusive_lock

logger = logging.getLogger(__name__)

BUDGET_KEY_PREFIX = "twn_budget_"
VERSION_KEY = "twn_budget_version"
COMMITS_KEY = "twn_budget_commits"
PENDING_KEY = "twn_budget_pending"
COMMIT_LOG_LENGTH = 64
LOCK_FILENAME = "twn-budget.lock"
# A remote writer overwrites within milliseconds of reading; waiting this long before
# verifying a commit to a server catches it. Embedded databases need no wait (the lock holds).
SERVER_SETTLE_S = 0.05
MAX_COMMIT_ATTEMPTS = 20


class BudgetCommitError(IndexStoreError):
    """A budget commit kept being overwritten by other writers and could not be verified."""


def budget_key(role: str) -> str:
    """The collection-metadata key of ``role``'s budget."""
    return f"{BUDGET_KEY_PREFIX}{role}"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")


def add_spend(ledger: BudgetLedger, before: BudgetLedger, after: BudgetLedger) -> None:
    """Add to ``ledger`` what was spent between the snapshots ``before`` and ``after``."""
    ledger.items_seen += after.items_seen - before.items_seen
    ledger.items_thought += after.items_thought - before.items_thought
    ledger.thought_tokens += after.thought_tokens - before.thought_tokens


def budgets_in(metadata: Mapping[str, Any] | None) -> dict[str, ReasoningBudget]:
    """The budgets stored in collection ``metadata``, by role (roles without one left out)."""
    found = {}
    for role in ROLES:
        text = (metadata or {}).get(budget_key(role))
        if text is not None:
            try:
                found[role] = ReasoningBudget.from_json(str(text))
            except (ValueError, TypeError) as exc:
                raise IndexStoreError(f"the stored {role} budget is damaged ({exc}): {text!r}") from exc
    return found


def collection_lock_path(collection) -> Path:
    """Beside an embedded database; for a server, one per collection in the temp folder, so
    processes on this machine serialise (other machines are caught by verification)."""
    settings = collection._client.get_settings()
    if getattr(settings, "is_persistent", False) and settings.persist_directory:
        return Path(settings.persist_directory) / LOCK_FILENAME
    where = f"{settings.chroma_server_host}:{settings.chroma_server_http_port}/{collection.id}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "twn-rag-locks" / f"{digest}.lock"


def _is_server(collection) -> bool:
    settings = collection._client.get_settings()
    return not (getattr(settings, "is_persistent", False) and settings.persist_directory)


class CollectionBudgets:
    """Read and commit the per-role reasoning budgets of one Chroma ``collection``.

    Every read goes to the store (never a cached copy), so a new process, or another route
    into the same collection, continues the same ledger. ``settle_s`` (default: 0 embedded,
    ``SERVER_SETTLE_S`` for a server) is how long a commit waits before verifying itself;
    ``lock_path`` replaces the lock file that serialises writers on this machine.
    """

    def __init__(self, collection, *, settle_s: float | None = None, lock_path: str | Path | None = None):
        self._collection = collection
        # ``lock_path`` exists for tests that play writers on different machines.
        self._lock = Path(lock_path) if lock_path is not None else collection_lock_path(collection)
        self._settle_s = (SERVER_SETTLE_S if _is_server(collection) else 0.0) if settle_s is None else settle_s
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_stack = ExitStack()
        # Which writers share this lock: only they can tell that a registered store is dead.
        self._lock_domain = f"{socket.gethostname()}:{self._lock}"

    @property
    def collection(self):
        return self._collection

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata as stored now."""
        # chromadb caches metadata on the Collection handle and has no public refresh; its
        # client API's get_collection reads the stored record.
        fresh = self._collection._client.get_collection(
            name=self._collection.name, tenant=self._collection.tenant, database=self._collection.database
        )
        return dict(fresh.metadata or {})

    def has_budgets(self) -> bool:
        """Whether every role has a stored budget."""
        return set(budgets_in(self.metadata())) == set(ROLES)

    def read(self, role: str) -> ReasoningBudget:
        """``role``'s stored budget (limits and ledger) as of now. ``IndexStoreError`` when the
        collection has none (bind it first with ``ensure``)."""
        _check_role(role)
        stored = budgets_in(self.metadata())
        if role not in stored:
            raise IndexStoreError(
                f"collection {self._collection.name!r} has no stored {role} budget; "
                "create it through twn-rag (TWNIndex, or an embedding bound with for_chroma_collection)"
            )
        return stored[role]

    def ensure(self, defaults: Mapping[str, ReasoningBudget]) -> dict[str, ReasoningBudget]:
        """Store ``defaults`` for the roles that have no budget yet; returns all stored budgets."""
        missing = [role for role in ROLES if role in defaults]

        def fill(budgets: dict[str, ReasoningBudget]) -> None:
            for role in missing:
                budgets.setdefault(role, dataclasses.replace(defaults[role]))

        return self._commit(fill)

    def set_limits(self, role: str, budget: ReasoningBudget) -> ReasoningBudget:
        """Replace ``role``'s limits with ``budget``'s; the stored ledger (what was spent) is kept."""
        _check_role(role)

        def replace(budgets: dict[str, ReasoningBudget]) -> None:
            kept = budgets[role].ledger if role in budgets else BudgetLedger()
            budgets[role] = dataclasses.replace(budget, ledger=dataclasses.replace(kept))

        return self._commit(replace)[role]

    def commit(self, role: str, before: BudgetLedger, after: BudgetLedger) -> ReasoningBudget:
        """Add what was spent between the ledger snapshots ``before`` and ``after`` to the
        stored ledger (merged with what other writers recorded meanwhile); returns the stored budget."""
        _check_role(role)
        if before == after:
            return self.read(role)

        def spend(budgets: dict[str, ReasoningBudget]) -> None:
            if role not in budgets:
                raise IndexStoreError(f"collection {self._collection.name!r} lost its stored {role} budget")
            add_spend(budgets[role].ledger, before, after)

        return self._commit(spend)[role]

    @contextmanager
    def spending(self, role: str) -> Iterator[ReasoningBudget]:
        """A fresh copy of ``role``'s stored budget to select with; what its ledger gained in
        the block is committed when the block ends (also when it raises: spent is spent)."""
        budget = self.read(role)
        before = dataclasses.replace(budget.ledger)
        try:
            yield budget
        finally:
            self.commit(role, before, budget.ledger)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this machine's lock on the collection's budgets for the block (re-entrant), e.g.
        to check which records exist, write them and count them as one step."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._lock_stack.enter_context(exclusive_lock(self._lock))
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._lock_stack.close()

    def _commit(self, mutate: Callable[[dict[str, ReasoningBudget]], None]) -> dict[str, ReasoningBudget]:
        return self.modify_metadata(lambda _metadata, budgets: mutate(budgets))

    def modify_metadata(
        self, mutate: Callable[[dict[str, Any], dict[str, ReasoningBudget]], None]
    ) -> dict[str, ReasoningBudget]:
        """Apply ``mutate(metadata, budgets)`` (both changed in place) to the stored collection
        metadata and write it back, verified (module docstring); returns the stored budgets.
        Every twn-rag write to the metadata goes through here, so none loses another's commit.
        ``mutate`` may run more than once (on a retry) and must not have other effects."""
        with self.exclusive():
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                metadata = self.metadata()
                budgets = budgets_in(metadata)
                mutate(metadata, budgets)
                token = uuid.uuid4().hex
                commits = [*json.loads(str(metadata.get(COMMITS_KEY, "[]"))), token][-COMMIT_LOG_LENGTH:]
                updated = {
                    **metadata,
                    **{budget_key(role): budget.to_json() for role, budget in budgets.items()},
                    VERSION_KEY: int(metadata.get(VERSION_KEY, 0)) + 1,
                    COMMITS_KEY: json.dumps(commits),
                }
                self._collection.modify(metadata=updated)
                self.settle()
                if token in json.loads(str(self.metadata().get(COMMITS_KEY, "[]"))):
                    return budgets
                logger.info(
                    "budget commit to %r overwritten by another writer (attempt %d); reapplying",
                    self._collection.name,
                    attempt,
                )
        raise BudgetCommitError(
            f"could not commit the budget of collection {self._collection.name!r}: "
            f"{MAX_COMMIT_ATTEMPTS} attempts were overwritten by other writers"
        )

    def settle(self) -> None:
        """Wait long enough, after a write to a server, for a concurrent remote write to land
        before reading back what was written (``settle_s``; no wait for an embedded database)."""
        if self._settle_s:
            time.sleep(self._settle_s)

    # -- counting stored records exactly ------------------------------------------------------
    def begin_store(self, role: str, thought_tokens: int) -> str:
        """Before writing records: commit the ``thought_tokens`` their thoughts cost (spent when
        generated, whether or not the records turn out new) and register a store under way.
        Returns its writer token: tag the records with it, then call ``finish_store``."""
        _check_role(role)
        writer = uuid.uuid4().hex

        def begin(metadata: dict[str, Any], budgets: dict[str, ReasoningBudget]) -> None:
            budgets[role].ledger.thought_tokens += int(thought_tokens)
            pending = json.loads(str(metadata.get(PENDING_KEY, "{}")))
            pending[writer] = {"role": role, "lock": self._lock_domain}
            metadata[PENDING_KEY] = json.dumps(pending, sort_keys=True)

        self.modify_metadata(begin)
        return writer

    def finish_store(self, writer: str, items_stored: int, items_thought: int) -> ReasoningBudget:
        """After writing: count the records the store of ``writer`` added new (``items_stored``,
        of which ``items_thought`` thought) and close it. Returns the role's stored budget."""
        role: list[str] = []

        def finish(metadata: dict[str, Any], budgets: dict[str, ReasoningBudget]) -> None:
            pending = json.loads(str(metadata.get(PENDING_KEY, "{}")))
            entry = pending.pop(writer, None)
            if entry is None:  # already counted (recovered by another writer): never twice
                role[:] = []
                return
            role[:] = [entry["role"]]
            budgets[entry["role"]].ledger.items_seen += int(items_stored)
            budgets[entry["role"]].ledger.items_thought += int(items_thought)
            metadata[PENDING_KEY] = json.dumps(pending, sort_keys=True)

        budgets = self.modify_metadata(finish)
        return budgets[role[0]] if role else budgets["document"]

    def recover_stores(self, count_records: Callable[[str], tuple[int, int]]) -> int:
        """Count the records of stores that began on this machine and never finished (their
        writer was killed between writing and counting): ``count_records(writer)`` gives
        ``(stored, thought)`` for a writer token. Call with ``exclusive()`` held: a live writer
        holds the same lock from writing to counting, so a store registered under this lock is
        dead when the lock is ours (stores of other machines are left to them). Returns how many
        stores were recovered."""
        pending = json.loads(str(self.metadata().get(PENDING_KEY, "{}")))
        dead = [writer for writer, entry in pending.items() if entry.get("lock") == self._lock_domain]
        for writer in dead:
            stored, thought = count_records(writer)
            logger.info("counting %d records of an interrupted store (%s)", stored, writer)
            self.finish_store(writer, stored, thought)
        return len(dead)
