"""Errors of the Chroma-backed index; each message names the index and what to do.

The CLI gives each family its own exit code (``twn_rag.cli.app``): an index that is missing
or cannot be used as asked (``IndexUnusableError``) is not the same failure as one whose
stored data is damaged (``IndexDamagedError``)."""

from __future__ import annotations


class IndexStoreError(RuntimeError):
    """Base class for index errors."""


class IndexUnusableError(IndexStoreError):
    """The index cannot be used as asked: nothing is stored there, the path is of the wrong
    kind (a file), it cannot be written, or its server cannot be reached. Nothing is damaged."""


class IndexNotFoundError(IndexUnusableError):
    """No twn-rag index exists where one was asked for, and none may be created there."""


class IndexReadOnlyError(IndexUnusableError):
    """The index cannot be written (a read-only folder, file or mount, or opened read-only)."""


class IndexConnectionError(IndexUnusableError):
    """The Chroma server at the given URL cannot be reached."""


class IndexDamagedError(IndexStoreError):
    """The index's stored data is damaged (a truncated, emptied or overwritten database, a
    database file gone from its folder); ``twn-rag check --repair`` says and does what can be done.
    ``damage`` is what is wrong; the message adds the command to run (``check_command``)."""

    def __init__(self, damage: str, check_command: str):
        super().__init__(f"{damage}; run `{check_command}` (--repair moves a damaged database aside)")
        self.damage = damage


class IndexMismatchError(IndexStoreError):
    """The index was built with another model, dimension or loader settings, or by another tool."""
