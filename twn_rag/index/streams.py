"""Steps of the ingest stream between a loader and the embedder: saving images, timing the
loader, flagging a file's last item, and batching. Each passes items through in order."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from twn_rag.index.records import LAST_IN_FILE_KEY
from twn_rag.index.report import IngestTimings
from twn_rag.loaders.items import DocumentItem


def mark_last(items: Iterable[DocumentItem]) -> Iterator[DocumentItem]:
    """Pass items through, setting ``last_in_file`` (True on the final one only). When the
    source fails, the item held back is still passed on (not marked last), then the error."""
    previous: DocumentItem | None = None
    try:
        for item in items:
            if previous is not None:
                previous.metadata[LAST_IN_FILE_KEY] = False
                yield previous
            previous = item
    except Exception:
        if previous is not None:
            previous.metadata[LAST_IN_FILE_KEY] = False
            yield previous
        raise
    if previous is not None:
        previous.metadata[LAST_IN_FILE_KEY] = True
        yield previous


def batched(items: Iterable[DocumentItem], size: int) -> Iterator[list[DocumentItem]]:
    """Lists of ``size`` items (the last one shorter). When the source fails, the partial list
    is still passed on, then the error."""
    chunk: list[DocumentItem] = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) == size:
                yield chunk
                chunk = []
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def saving_images(items: Iterable[DocumentItem], images_dir: Path) -> Iterator[DocumentItem]:
    """Pass items through, writing each one's rendered page or frame under ``images_dir``."""
    for item in items:
        item.save_image(images_dir)
        yield item


def timed(items: Iterator[DocumentItem], timings: IngestTimings) -> Iterator[DocumentItem]:
    """Pass items through, adding the time spent producing them to ``timings.load_s``."""
    while True:
        started = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            timings.load_s += time.perf_counter() - started
            return
        timings.load_s += time.perf_counter() - started
        yield item
