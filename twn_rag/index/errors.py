"""Errors of the Chroma-backed index; each message names the index and what to do."""

from __future__ import annotations


class IndexStoreError(RuntimeError):
    """Base class for index errors."""


class IndexNotFoundError(IndexStoreError):
    """No twn-rag index exists where one was asked for, and none may be created there."""


class IndexMismatchError(IndexStoreError):
    """The index was built with another model, dimension or loader settings, or by another tool."""


class IndexConnectionError(IndexStoreError):
    """The Chroma server at the given URL cannot be reached."""
