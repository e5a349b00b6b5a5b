"""One entry point per file (by kind) and an eager loader for whole folders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from twn_rag.loaders.files import FileRef, discover_files
from twn_rag.loaders.image import iter_image_items
from twn_rag.loaders.items import DocumentItem, FileFailure, LoadError
from twn_rag.loaders.pdf import iter_pdf_pages
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.loaders.video import iter_video_items

logger = logging.getLogger(__name__)

LOADERS: dict[str, Callable[[FileRef, LoaderSettings], Iterator[DocumentItem]]] = {
    "pdf": iter_pdf_pages,
    "video": iter_video_items,
    "image": iter_image_items,
}


def iter_file_items(ref: FileRef, settings: LoaderSettings | None = None) -> Iterator[DocumentItem]:
    """Items of one described file, lazily; ``LoadError`` when (part of) it cannot be read.
    Whatever a decoder raises on damaged data (its library's own exception, ``MemoryError``...)
    becomes a ``LoadError`` naming the file, so one file never stops a run."""
    return _file_errors(ref, LOADERS[ref.kind](ref, settings or LoaderSettings()))


def _file_errors(ref: FileRef, items: Iterator[DocumentItem]) -> Iterator[DocumentItem]:
    try:
        yield from items
    except LoadError:
        raise
    except Exception as exc:
        logger.debug("reading %s raised", ref.path, exc_info=True)
        raise LoadError(ref.path, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def load_items(
    paths: Iterable[str | Path],
    settings: LoaderSettings | None = None,
    image_dir: str | Path | None = None,
) -> tuple[list[DocumentItem], list[FileFailure]]:
    """Load every supported file under ``paths`` into memory.

    With ``image_dir``, rendered pages and frames are written there (``image_path`` set, pixels
    released), which LlamaIndex image nodes need. Returns the items of the files that loaded
    completely, and one ``FileFailure`` per file that did not (unsupported files met in folders
    are logged and skipped).
    """
    discovery = discover_files(paths)
    for skipped in discovery.skipped:
        logger.info("skipped %s: %s", skipped.path, skipped.reason)
    items: list[DocumentItem] = []
    failures = list(discovery.failures)
    for path, kind in discovery.files:
        try:
            file_items = list(iter_file_items(FileRef.describe(path, kind), settings))
        except LoadError as exc:
            logger.warning("cannot load %s: %s", exc.path, exc.reason)
            failures.append(FileFailure(exc.path, exc.reason))
            continue
        if image_dir is not None:
            for item in file_items:
                item.save_image(image_dir)
                item.release_pixels()
        items.extend(file_items)
    return items, failures
