"""Running a loader ahead of its consumer in a background thread, so that rendering and
decoding overlap with embedding instead of adding to it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1


def prefetched(items: Iterator[T], max_ahead: int) -> Iterator[T]:
    """Yield what ``items`` yields, in order, while a background thread produces up to
    ``max_ahead`` items in advance. An exception raised by ``items`` is raised here at the
    point it occurred in the stream. Closing this generator early stops the producer (after
    the item it is working on) and closes ``items`` in the producer's thread, so a loader that
    is not thread-safe (PDFium) is only ever used by one thread."""
    if max_ahead < 1:
        raise ValueError(f"max_ahead must be >= 1, got {max_ahead}")
    buffer: queue.Queue = queue.Queue(maxsize=max_ahead)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="twn-rag-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        producer.join()
