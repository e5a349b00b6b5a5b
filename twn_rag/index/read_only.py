"""Reading an index that cannot (or must not) be written.

chromadb 1.5.9 cannot open an embedded database it may not write: ``PersistentClient`` fails
at start-up with "attempt to write a readonly database" (SQLite code 8), before any read, for
a read-only mount as for a file its user may not write, and no setting opens it read-only. So
a read-only index is read from a **temporary copy** of its ``chroma`` folder (``snapshot``):
the SQLite database copied with SQLite's backup API from a ``mode=ro`` connection (a consistent
copy), the vector segment files copied as they are. The copy costs the database's size in the
temporary folder and is removed when the index is closed or garbage-collected; page and frame
images are read where they are.

On a read-only index (``TWNIndex.open(..., read_only=True)``, or one found unwritable) every
write is refused with ``IndexReadOnlyError`` (``ReadOnlyCollection``), except the query budget's
spend, which a search would commit: it is skipped with a warning (``ReadOnlyBudgets``), so the
search still answers.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from twn_rag.budget import BudgetLedger, ReasoningBudget
from twn_rag.index.budget_store import CollectionBudgets
from twn_rag.index.directory import DATABASE_FILENAME, read_only_error
from twn_rag.index.errors import IndexReadOnlyError, IndexUnusableError

logger = logging.getLogger(__name__)

# The collection methods that write; the others (get, query, count, peek, metadata...) read.
WRITE_METHODS = frozenset({"add", "upsert", "update", "delete", "modify", "fork"})


class ReadOnlyCollection:
    """A chromadb collection whose writes raise ``IndexReadOnlyError`` naming the index; reads
    (and attributes such as ``name`` and ``metadata``) go to the collection."""

    def __init__(self, collection, index_dir: Path, reason: Path | str):
        self._wrapped = collection
        self._index_dir = index_dir
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        if name in WRITE_METHODS:
            raise self.write_refused()
        return getattr(self._wrapped, name)

    @property
    def index_dir(self) -> Path:
        return self._index_dir

    def write_refused(self) -> IndexReadOnlyError:
        """The error every write raises."""
        return read_only_error(self._index_dir, self._reason)

    def __repr__(self) -> str:
        return f"ReadOnlyCollection({self._wrapped!r})"


class ReadOnlyBudgets(CollectionBudgets):
    """The budgets of a ``ReadOnlyCollection``: read as stored; a commit of spend (a search's)
    is skipped with a warning; any other write raises ``IndexReadOnlyError``."""

    def commit(self, role: str, before: BudgetLedger, after: BudgetLedger) -> ReasoningBudget:
        if before != after:
            logger.warning(
                "index %s is read-only: the %s budget's spend of this call is not recorded",
                self.collection.index_dir,
                role,
            )
        return self.read(role)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        yield  # nothing is written, so there is nothing to serialise

    def modify_metadata(self, mutate) -> dict[str, ReasoningBudget]:
        raise self.collection.write_refused()


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite file ``source``, read through a read-only connection."""
    reader = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
    with closing(reader), closing(sqlite3.connect(target)) as writer:
        reader.backup(writer)


def snapshot(chroma_dir: Path) -> Path:
    """A temporary copy of the embedded Chroma folder ``chroma_dir`` (module docstring), in a
    temporary folder of its own; the caller removes it (``discard_copy``). ``IndexUnusableError``
    when the database cannot be read."""
    folder = Path(tempfile.mkdtemp(prefix="twn-rag-read-only-"))
    copy = folder / chroma_dir.name
    try:
        shutil.copytree(chroma_dir, copy, ignore=shutil.ignore_patterns(f"{DATABASE_FILENAME}*", "*.lock"))
        _copy_database(chroma_dir / DATABASE_FILENAME, copy / DATABASE_FILENAME)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise IndexUnusableError(f"cannot read the read-only index database {chroma_dir}: {exc}") from exc
    logger.info("index database %s is read-only: reading a temporary copy in %s", chroma_dir, copy)
    return copy


def discard_copy(client, copy: Path) -> None:
    """Close ``client`` (opened on the ``snapshot`` ``copy``) and remove the copy's folder."""
    try:
        client.close()
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def remove_when_closed(owner: object, client, copy: Path) -> weakref.finalize:
    """``discard_copy`` when ``owner`` is garbage-collected or the interpreter exits; call the
    returned finalizer to do it sooner (once)."""
    return weakref.finalize(owner, discard_copy, client, copy)
