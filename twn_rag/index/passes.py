"""The work of ``TWNIndex.add``'s passes that does not touch the store, in pieces that run the
same in this process and in Ray tasks and actors (``ray_passes``):

- pass 1: load a file's new items and embed them without thinking (vector + gate score);
- pass 3: load the items the global selection chose and embed them again with a thought.

Pass 2 (the selection) and every write to the store stay with ``TWNIndex`` (the driver).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twn_rag.budget import ReasoningBudget
from twn_rag.embedder import EmbeddingResult, TWNEmbedder
from twn_rag.index.report import IngestTimings
from twn_rag.index.streams import batched, mark_last, saving_images, timed
from twn_rag.loaders.dispatch import iter_file_items
from twn_rag.loaders.files import FileRef
from twn_rag.loaders.items import DocumentItem, LoadError
from twn_rag.loaders.prefetch import prefetched
from twn_rag.loaders.settings import LoaderSettings

logger = logging.getLogger(__name__)

ROLE = "document"
# What a pass makes of one item: its embedding, or the reason it could not be embedded.
Outcome = EmbeddingResult | str


@dataclass
class PassSettings:
    """What passes 1 and 3 need besides the model, wherever they run: the index's loader
    settings, where page and frame images go, items per forward pass, and the run's timings."""

    loader: LoaderSettings
    images_dir: Path
    batch_size: int
    timings: IngestTimings
    # ``TWNEmbedder.encode``'s ``max_input_tokens`` and ``max_batch_tokens``, for both passes.
    encode_limits: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileJob:
    """A file whose new items pass 1 embeds: those of ``ref`` not in ``stored_ids``."""

    ref: FileRef
    stored_ids: set[str] = field(default_factory=set)


@dataclass
class ThinkJob:
    """The items of one source file chosen to think, with their pass-1 gate scores by id."""

    source: str
    kind: str
    content_hash: str
    gate_scores: dict[str, float]


def encode_isolating(encode: Callable[[list[DocumentItem]], Sequence[EmbeddingResult]], items: list[DocumentItem]):
    """One outcome per item: ``encode``'s result, or the reason it could not be embedded. A
    batch that fails (any error, or a non-finite vector) is split in halves and retried, down
    to single items, so one bad item does not fail its neighbours."""
    try:
        results = list(encode(items))
        if all(np.isfinite(result.vector).all() for result in results):
            return results
        reason = "the model returned a non-finite vector (NaN or inf)"
    except Exception as exc:  # processor limits, out of memory, unreadable input...
        reason = f"{type(exc).__name__}: {exc}"
    if len(items) == 1:
        return [reason]
    middle = len(items) // 2
    return [*encode_isolating(encode, items[:middle]), *encode_isolating(encode, items[middle:])]


def embed_without_thinking(
    embedder: TWNEmbedder, items: list[DocumentItem], batch_size: int, **encode_limits: Any
) -> list[Outcome]:
    """Pass 1 over ``items``: each one's no-think vector and gate score (or why it failed).
    ``encode_limits``: ``TWNEmbedder.encode``'s ``max_input_tokens`` and ``max_batch_tokens``."""

    def encode(batch: list[DocumentItem]):
        inputs = [item.to_input() for item in batch]
        # No thought, no spend here: the store counts the items it writes.
        never = ReasoningBudget(mode="never")
        return embedder.encode(inputs, role=ROLE, budget=never, batch_size=batch_size, **encode_limits)

    return encode_isolating(encode, items)


def embed_with_thoughts(
    embedder: TWNEmbedder,
    items: list[DocumentItem],
    gate_scores: dict[str, float],
    max_tokens: int,
    batch_size: int,
    **encode_limits: Any,
) -> list[Outcome]:
    """Pass 3 over ``items``: each one thought about and embedded with its thought."""

    def encode(batch: list[DocumentItem]):
        inputs = [item.to_input() for item in batch]
        scores = [gate_scores[item.id] for item in batch]
        return embedder.encode_with_thoughts(inputs, ROLE, scores, max_tokens, batch_size=batch_size, **encode_limits)

    return encode_isolating(encode, items)


def new_items(job: FileJob, loader: LoaderSettings, images_dir: Path) -> Iterator[DocumentItem]:
    """The items of ``job``'s file that are not stored yet, in file order, images saved under
    ``images_dir``, the file's final item flagged ``last_in_file``; ``LoadError`` where the
    file cannot be read further (after the items before it)."""
    items = mark_last(saving_images(iter_file_items(job.ref, loader), images_dir))
    return (item for item in items if item.id not in job.stored_ids)


def selected_items(job: ThinkJob, loader: LoaderSettings) -> Iterator[tuple[str, DocumentItem | str]]:
    """``(id, item)`` for each chosen item of ``job``'s file, loaded again; ``(id, reason)`` for
    those that cannot be (the file changed, vanished or cannot be read any more)."""
    wanted = set(job.gate_scores)
    try:
        ref = FileRef.describe(job.source, job.kind)
        if ref.content_hash != job.content_hash:
            raise LoadError(job.source, "the file changed after its items were embedded")
        for item in iter_file_items(ref, loader):
            if item.id in wanted:
                wanted.discard(item.id)
                yield item.id, item
            if not wanted:
                return
        reason = "no longer in its file"
    except LoadError as exc:
        reason = exc.reason
    for item_id in sorted(wanted):
        yield item_id, reason


class LocalPasses:
    """Passes 1 and 3 in this process, with the index's embedder: loading runs ``chunk_size``
    items ahead in a background thread, overlapped with embedding."""

    def __init__(self, embedder: TWNEmbedder, settings: PassSettings, chunk_size: int):
        self.embedder = embedder
        self.settings = settings
        self.chunk_size = chunk_size

    def first_pass(self, jobs: Iterable[FileJob]) -> Iterator[tuple[FileJob, Iterator[tuple[DocumentItem, Outcome]]]]:
        """Each job with the stream of its new items' outcomes (lazy: a file is loaded and
        embedded while its stream is read; the stream raises ``LoadError`` where loading failed)."""
        for job in jobs:
            yield job, self._embedded(job)

    def _embedded(self, job: FileJob) -> Iterator[tuple[DocumentItem, Outcome]]:
        settings = self.settings
        loaded = timed(new_items(job, settings.loader, settings.images_dir), settings.timings)
        with closing(prefetched(loaded, max_ahead=self.chunk_size)) as items:
            for batch in batched(items, settings.batch_size):
                started = time.perf_counter()
                outcomes = embed_without_thinking(self.embedder, batch, settings.batch_size, **settings.encode_limits)
                settings.timings.embed_s += time.perf_counter() - started
                yield from zip(batch, outcomes)

    def third_pass(self, jobs: Sequence[ThinkJob], max_tokens: int) -> Iterator[tuple[str, Outcome]]:
        """``(id, outcome)`` for every chosen item of ``jobs``, thought about in batches that
        span files."""
        scores = {item_id: score for job in jobs for item_id, score in job.gate_scores.items()}
        settings = self.settings
        loaded = (entry for job in jobs for entry in selected_items(job, settings.loader))
        for batch in batched(loaded, settings.batch_size):  # type: ignore[arg-type]
            items = [item for _, item in batch if isinstance(item, DocumentItem)]
            yield from ((item_id, item) for item_id, item in batch if isinstance(item, str))
            if items:
                started = time.perf_counter()
                outcomes = embed_with_thoughts(
                    self.embedder, items, scores, max_tokens, settings.batch_size, **settings.encode_limits
                )
                settings.timings.embed_s += time.perf_counter() - started
                yield from ((item.id, outcome) for item, outcome in zip(items, outcomes))
