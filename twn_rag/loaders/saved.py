"""One file's items streamed with their page and frame images written to disk: what the
framework loaders (``llama_index.readers.twn``, ``langchain_twn``) yield from, one item at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from twn_rag.loaders.dispatch import iter_file_items
from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem
from twn_rag.loaders.settings import LoaderSettings


def default_image_dir() -> Path:
    """Where rendered pages and frames go when no ``image_dir`` is given:
    ``$XDG_CACHE_HOME/twn-rag/images`` (``~/.cache/twn-rag/images``). Image files are named by
    item id (content hash, source, page or timestamp), so files never collide and a re-load
    rewrites the same files."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "twn-rag" / "images"


def iter_saved_items(
    path: str | Path,
    image_dir: str | Path | None = None,
    settings: LoaderSettings | None = None,
) -> Iterator[DocumentItem]:
    """The items of the file ``path``, lazily: each page or frame is rendered, written under
    ``image_dir`` (default ``default_image_dir()``) with an absolute ``image_path``, and its
    pixels released before it is yielded, so one page or frame is in memory at a time.

    Raises ``LoadError`` naming the file when it is missing, of no supported kind, or (part of
    it) cannot be read; items before a damaged page or frame have been yielded by then."""
    directory = Path(image_dir).expanduser().resolve() if image_dir is not None else default_image_dir()
    for item in iter_file_items(FileRef.describe(path), settings):
        item.save_image(directory)
        item.release_pixels()
        yield item
