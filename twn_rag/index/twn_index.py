"""``TWNIndex``: PDFs, videos and images embedded with TWN into a Chroma collection, with a
reasoning budget per role that the index keeps (and enforces) across processes.

Layout of an index directory::

    <index_dir>/chroma/   the embedded Chroma database (absent when a server URL is used)
    <index_dir>/images/   rendered pages and sampled frames, one file per item

Consistency, including after a kill -9:

- item ids are stable (content hash + source + page/timestamp) and written with ``add``,
  which ignores ids already stored, so a repeated write never duplicates;
- a file's items are written in order and its final item is flagged ``last_in_file``: a file
  whose flagged item is stored is complete, and re-indexing it writes nothing; an incomplete
  file is resumed, embedding only the items not stored yet;
- a changed file's old items are deleted only once its new version is complete;
- the ledger is exact (``budget_store``): a chunk's thought tokens are committed before its
  records are written (spent when generated); its items are counted once, when this writer
  stored them new (records carry the writer's token and are read back), so a second writer
  or a resumed run never counts them again; a store killed between writing and counting is
  counted by the next writer on the machine, from the records that carry its token;
- the budget is allocated over the index (``add``): pass-1 records are stored not final
  (``twn_final: False``) with their no-think vector and gate score; the selection reads the
  non-final records, so a killed run's selection is simply made again; a pass-3 store commits
  its thought tokens first, then replaces the records still non-final (tagged with its
  ``twn_think_writer`` token, read back), then counts their thoughts, so a thought is counted
  once even when its store was killed before counting.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from twn_rag.budget import ReasoningBudget
from twn_rag.embedder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    FROM_CONFIG,
    EmbeddingResult,
    InputTokenCap,
    TWNEmbedder,
)
from twn_rag.index.allocation import choose_thinkers, think_jobs
from twn_rag.index.budget_store import CollectionBudgets
from twn_rag.index.client import COSINE_CONFIGURATION, IndexConnection, connect, describe_client
from twn_rag.index.collection_name import check_collection_name
from twn_rag.index.directory import (
    CHROMA_SUBDIR,
    DATABASE_FILENAME,
    IMAGES_SUBDIR,
    chroma_errors_as_index_errors,
    make_folder,
    read_only_error,
    require_folder,
)
from twn_rag.index.directory import inspect as inspect_index_dir
from twn_rag.index.errors import IndexMismatchError, IndexNotFoundError, IndexReadOnlyError
from twn_rag.index.fingerprint import ModelFingerprint
from twn_rag.index.manifest import IndexManifest, canonical_model_id
from twn_rag.index.passes import FileJob, LocalPasses, Outcome, PassSettings
from twn_rag.index.read_only import ReadOnlyBudgets, ReadOnlyCollection
from twn_rag.index.records import (
    FINAL_KEY,
    LAST_IN_FILE_KEY,
    THINK_WRITER_KEY,
    WRITER_KEY,
    SearchHit,
    add_chunked,
    hits_from_query,
    reachable_ids,
    record_metadata,
    resolve_image_path,
    update_chunked,
)
from twn_rag.index.report import IndexInfo, IndexingAborted, IndexReport
from twn_rag.index.streams import batched
from twn_rag.loaders.files import FileRef, canonical_source, discover_files
from twn_rag.loaders.items import DocumentItem, FileFailure, LoadError, utf8_safe
from twn_rag.loaders.settings import LoaderSettings
from twn_rag.result_metadata import THOUGHT_USED_KEY, result_metadata

if TYPE_CHECKING:
    from twn_rag.index.check import CheckReport

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "twn"
# Items stored per write (with one ledger update): the most embedding work a kill -9 can lose.
# Embedding itself goes batch by batch, as items arrive from the loader.
DEFAULT_CHUNK_SIZE = 32
# Where ``add`` runs passes 1 and 3: this process, or a Ray cluster (``twn-rag[ray]``).
EXECUTORS = ("local", "ray")


def _load_embedder(model: TWNEmbedder | str | Path) -> TWNEmbedder:
    if isinstance(model, TWNEmbedder):
        return model
    return TWNEmbedder.from_pretrained(canonical_model_id(str(model)))


def _describe(location: str, collection: str) -> str:
    """How messages name an index."""
    return f"{location} (collection {collection!r})"


def _not_found(where: str) -> IndexNotFoundError:
    return IndexNotFoundError(f"no twn-rag index at {where}; index documents into it first (with a model)")


@dataclass
class _PendingChunk:
    """Items embedded (pass 1) but not stored yet."""

    items: list[DocumentItem] = field(default_factory=list)
    results: list[EmbeddingResult] = field(default_factory=list)


def _place(item: DocumentItem) -> str:
    """Where an item is in its file, for messages: ``page 3``, ``t=12.50s`` or ``the image``."""
    if "page" in item.metadata:
        return f"page {item.metadata['page']}"
    if "timestamp" in item.metadata:
        return f"t={float(item.metadata['timestamp']):.2f}s"
    return "the image"


def _not_embedded(failed: list[tuple[DocumentItem, str]]) -> str:
    """One phrase for the items of a file that could not be embedded: how many, the first's place and reason."""
    item, reason = failed[0]
    others = f" (and {len(failed) - 1} more items)" if len(failed) > 1 else ""
    return f"{_place(item)} could not be embedded{others}: {reason}"


class TWNIndex:
    """A searchable multimodal index in one Chroma collection. Open it with ``open``; then
    ``add`` paths, ``search`` by text and/or image, ``delete_source``, ``info``."""

    def __init__(
        self,
        client,
        collection,
        index_dir: Path,
        location: str,
        embedder: TWNEmbedder | None,
        read_only_reason: str | None = None,
    ):
        if read_only_reason is not None:  # every write refused, naming the index and why
            collection = ReadOnlyCollection(collection, index_dir, read_only_reason)
        self._client = client
        self._collection = collection
        self.index_dir = index_dir
        self.location = location
        self._embedder = embedder
        self._read_only_reason = read_only_reason
        self._max_batch_size = int(client.get_max_batch_size())
        # Every read and write of the collection's metadata (budgets, manifest) goes through it.
        self._budgets = (CollectionBudgets if read_only_reason is None else ReadOnlyBudgets)(collection)
        # Removes the temporary copy a read-only database is read from (``close``).
        self._release_copy: Callable[[], Any] | None = None
        # The embedded query of the last ``search``: its thought and gate score.
        self.last_query: EmbeddingResult | None = None
        # The current ``add``'s token limits (max_input_tokens, max_batch_tokens), for ``encode``.
        self._encode_limits: dict[str, Any] = {}
        manifest = IndexManifest.from_metadata(collection.metadata)
        assert manifest is not None  # open() creates or validates it
        self.manifest = manifest

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        model: TWNEmbedder | str | Path | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        chroma_url: str | None = None,
        default_model: str | None = None,
        document_budget: ReasoningBudget | None = None,
        query_budget: ReasoningBudget | None = None,
        loader_settings: LoaderSettings | None = None,
        client=None,
        read_only: bool | None = False,
    ) -> TWNIndex:
        """Open the index in ``index_dir`` (Chroma embedded there, or the server at
        ``chroma_url``, or the chromadb ``client`` given, e.g. one a LangChain or LlamaIndex
        store already uses in this process), creating it when absent. Page and frame images
        live under ``index_dir`` in every case.

        ``model`` (an embedder, a checkpoint path or a hub id) must match the index's model and
        dimension (``IndexMismatchError`` otherwise); when ``None`` the index's own model is
        loaded on first use. A new index needs ``model`` or ``default_model``, else
        ``IndexNotFoundError``. Budgets given for a new index are its budgets (default: the
        checkpoint's); given for an existing index they replace its limits and keep its ledger.
        ``loader_settings`` default to the model's image cap and video sampling.

        ``read_only``: ``False`` the index must be writable (else ``IndexReadOnlyError``);
        ``True`` it is opened for reading (writes raise ``IndexReadOnlyError``; a search's query
        spend is not recorded, with a warning); ``None`` writable when it can be written, else
        read-only. chromadb cannot open an embedded database it may not write, so one that
        cannot be written is read from a temporary copy (``twn_rag.index.read_only``).

        ``IndexUnusableError`` when ``index_dir`` (or its ``chroma`` folder) is a file or
        cannot be created; ``IndexDamagedError`` when its database is damaged (empty, cut
        short, overwritten, gone from its folder): nothing is created over it, and
        ``twn-rag check`` says what can be done; ``ValueError`` for a collection name Chroma refuses.
        """
        may_create = (model is not None or default_model is not None) and read_only is not True
        connection = cls._connect(index_dir, collection, chroma_url, may_create, client, read_only)
        try:
            with chroma_errors_as_index_errors(connection.index_dir):
                index = cls._open_collection(
                    connection,
                    collection,
                    _load_embedder(model) if model is not None else None,
                    default_model,
                    {"document": document_budget, "query": query_budget},
                    loader_settings,
                )
        except BaseException:
            connection.release()
            raise
        index._release_copy = connection.release_when_closed(index)
        return index

    @classmethod
    def _open_collection(
        cls,
        connection: IndexConnection,
        name: str,
        embedder: TWNEmbedder | None,
        default_model: str | None,
        budgets: dict[str, ReasoningBudget | None],
        loader_settings: LoaderSettings | None,
    ) -> TWNIndex:
        """The index in collection ``name`` of ``connection``: attached when it exists, else
        created for ``embedder`` (or ``default_model``) unless the connection is read-only."""
        where = _describe(connection.location, name)
        existing = cls._find_collection(connection.client, name, where)
        if existing is not None:
            return cls._attach(
                connection.client,
                existing,
                connection.index_dir,
                connection.location,
                embedder,
                budgets,
                loader_settings,
                connection.read_only_reason,
            )
        if (embedder is None and default_model is None) or connection.read_only_reason is not None:
            raise _not_found(where)  # and none may be created
        embedder = embedder or _load_embedder(default_model)  # type: ignore[arg-type]
        return cls._create(
            connection.client, name, connection.index_dir, connection.location, embedder, budgets, loader_settings
        )

    @staticmethod
    def _connect(
        index_dir: str | Path,
        collection: str,
        chroma_url: str | None,
        may_create: bool,
        client=None,
        read_only: bool | None = False,
    ) -> IndexConnection:
        """The client for the index, after checking the collection name and, for an embedded
        database, the directory (``twn_rag.index.directory.inspect``). Nothing is created on
        disk for an index that does not exist and may not be created, or may not be written;
        an embedded database that cannot be written is read from a temporary copy unless
        ``read_only`` is ``False`` (then ``IndexReadOnlyError``)."""
        if client is not None and chroma_url is not None:
            raise ValueError("give a Chroma client or a chroma_url, not both")
        check_collection_name(collection)
        index_dir = Path(index_dir).expanduser().resolve()
        asked = "opened read-only" if read_only else None
        if client is not None or chroma_url is not None:
            require_folder(index_dir)
            if not read_only:
                make_folder(index_dir)
            client = client or connect(index_dir, chroma_url)
            return IndexConnection(client, index_dir, chroma_url or describe_client(client), asked)
        location = str(index_dir / CHROMA_SUBDIR)
        found = inspect_index_dir(index_dir)
        if not found.has_database and not may_create:
            raise _not_found(_describe(location, collection))
        if found.unwritable is not None:
            if read_only is False or not found.has_database:
                raise read_only_error(index_dir, found.unwritable)
            return IndexConnection.to_copy(index_dir, location, str(found.unwritable))
        if not read_only:
            make_folder(index_dir)
        try:
            return IndexConnection(connect(index_dir), index_dir, location, asked)
        except IndexReadOnlyError:  # chromadb could not write although the files say it may
            if read_only is False:
                raise
            return IndexConnection.to_copy(index_dir, location, "chromadb could not write its database")

    @staticmethod
    def _find_collection(client, name: str, where: str):
        """The collection holding a twn-rag index, or ``None`` when there is none (an empty
        collection without our metadata counts as none: it is taken over on creation)."""
        if name not in {c if isinstance(c, str) else c.name for c in client.list_collections()}:
            return None
        handle = client.get_collection(name, embedding_function=None)
        if IndexManifest.from_metadata(handle.metadata) is not None:
            return handle
        if handle.count() > 0:
            raise IndexMismatchError(
                f"collection at {where} holds records not written by twn-rag; use another --collection"
            )
        return None

    @classmethod
    def _create(
        cls,
        client,
        name: str,
        index_dir: Path,
        location: str,
        embedder: TWNEmbedder,
        budgets: dict[str, ReasoningBudget | None],
        loader_settings: LoaderSettings | None,
    ) -> TWNIndex:
        """A new index for ``embedder``; roles without a budget get the checkpoint's."""
        identity = ModelFingerprint.of(embedder)
        manifest = IndexManifest.for_embedder(
            embedder,
            {role: budget or embedder.default_budget(role) for role, budget in budgets.items()},
            loader_settings or cls.default_loader_settings(embedder),
            identity,
        )
        index = cls(client, cls._create_collection(client, name, manifest), index_dir, location, embedder)
        logger.info("created index %s for model %s", index._where, embedder.model_id)
        index._verify(embedder, loader_settings, identity)  # another process may have created it first
        return index

    @staticmethod
    def _create_collection(client, name: str, manifest: IndexManifest):
        """Create the collection with ``manifest`` (cosine space, vectors supplied by us). If
        another process created it meanwhile, that one is returned (and checked by the caller)."""
        handle = client.get_or_create_collection(
            name, metadata=manifest.to_metadata(), configuration=COSINE_CONFIGURATION, embedding_function=None
        )
        if IndexManifest.from_metadata(handle.metadata) is None:  # an empty collection made by someone else
            handle.modify(metadata=IndexManifest.merged_into(handle.metadata, manifest))
            handle = client.get_collection(name, embedding_function=None)
        return handle

    @classmethod
    def _attach(
        cls,
        client,
        handle,
        index_dir: Path,
        location: str,
        embedder: TWNEmbedder | None,
        budgets: dict[str, ReasoningBudget | None],
        loader_settings: LoaderSettings | None,
        read_only_reason: str | None = None,
    ) -> TWNIndex:
        """The existing index in ``handle``, checked against ``embedder`` and ``loader_settings``
        when given; the budgets given replace its limits (keeping its ledger). With a
        ``read_only_reason`` every write is refused (``IndexReadOnlyError``)."""
        index = cls(client, handle, index_dir, location, embedder, read_only_reason)
        index._verify(embedder, loader_settings)
        for role, budget in budgets.items():
            if budget is not None:
                index.set_budget(role, budget)
        return index

    def _verify(
        self,
        embedder: TWNEmbedder | None,
        loader_settings: LoaderSettings | None,
        identity: ModelFingerprint | None = None,
    ) -> None:
        """Refuse a model or loader settings other than the index's (those given)."""
        if embedder is not None:
            self._accept_model(embedder, identity)
        if loader_settings is not None:
            self.manifest.check_loader(loader_settings, self._where)

    def _accept_model(self, embedder: TWNEmbedder, identity: ModelFingerprint | None = None) -> None:
        """Refuse ``embedder`` unless it made the index's vectors (``identity``: its fingerprint,
        when already computed). A format-1 index, checked by its legacy digest, gets the
        per-component fingerprint recorded, so that later refusals can say what differs (not
        when read-only: it is checked by the legacy digest alone)."""
        if not self.manifest.identity.is_legacy or self.read_only:
            self.manifest.check_model(embedder, self._where, identity)
            return
        with self._budgets.exclusive():
            manifest = self._read_manifest()  # another process may have recorded it meanwhile
            manifest.check_model(embedder, self._where, identity)
            if manifest.identity.is_legacy:
                self._write_manifest(manifest.with_identity(identity or ModelFingerprint.of(embedder)))
                logger.info("index %s: recorded the per-component fingerprint of its model", self._where)

    @staticmethod
    def default_loader_settings(embedder: TWNEmbedder) -> LoaderSettings:
        """Pages and frames at the model's own image cap, videos at its frame rate."""
        return LoaderSettings(max_image_pixels=embedder.config.max_image_pixels, video_fps=embedder.config.video_fps)

    # -- properties ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._collection.name

    @property
    def _where(self) -> str:
        return _describe(self.location, self.name)

    @property
    def images_dir(self) -> Path:
        return self.index_dir / IMAGES_SUBDIR

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (``open(..., read_only=...)``, or an index that cannot be written)."""
        return self._read_only_reason is not None

    @property
    def database_path(self) -> Path | None:
        """The embedded SQLite database (the index's own file, also when a read-only index is
        read from a copy); ``None`` for a Chroma server."""
        path = Path(self.location) / DATABASE_FILENAME
        return path if path.is_file() else None

    def close(self) -> None:
        """Remove the temporary copy a read-only database is read from (done at the latest when
        the index is garbage-collected); nothing to do for other indexes. Do not use it afterwards."""
        if self._release_copy is not None:
            self._release_copy()
            self._release_copy = None

    def _refuse_writes(self) -> None:
        if self.read_only:
            raise self._collection.write_refused()

    @property
    def embedder(self) -> TWNEmbedder:
        """The index's embedder, loaded from its stored model id on first use."""
        if self._embedder is None:
            embedder = _load_embedder(self.manifest.model_id)
            self._accept_model(embedder)
            self._embedder = embedder
        return self._embedder

    def count(self) -> int:
        return self._collection.count()

    def vector_reach(self) -> tuple[int, int]:
        """``(reachable, records)``: how many records vector search can return, of the records
        stored. They differ when the vector index (HNSW) lost records its database still lists
        (its folder deleted or damaged): ``check`` names them, ``check(repair=True)`` re-queues
        them. One query for every record: about as costly as reading every record's metadata."""
        return len(reachable_ids(self._collection, self.manifest.dimension)), self.count()

    def check(self, repair: bool = False) -> CheckReport:
        """What is wrong with the index (``twn_rag.index.check.CheckReport``: images missing or
        orphaned, duplicates, incomplete files, records vector search cannot reach, the ledger,
        SQLite integrity); with ``repair``, what can be repaired is (``twn_rag.index.repair``),
        the rest by the next ``add`` of the re-queued files (``report.requeued``). Repairing needs
        a writable index (``IndexReadOnlyError``) and no other process writing to it."""
        from twn_rag.index.check import find_problems, read_records
        from twn_rag.index.repair import repair_problems

        if repair:
            self._refuse_writes()
        records = read_records(self)
        report = find_problems(self, records)
        if repair and report.problems:
            repair_problems(self, report, records)
        return report

    # -- budgets (read fresh, committed through the collection's budget store) ---------------
    def _read_manifest(self) -> IndexManifest:
        manifest = IndexManifest.from_metadata(self._budgets.metadata())
        if manifest is None:
            raise IndexMismatchError(f"collection {self.name!r} at {self.location} lost its twn-rag metadata")
        self.manifest = manifest
        return manifest

    def _write_manifest(self, manifest: IndexManifest) -> None:
        """Store ``manifest``'s identity and settings; the stored budgets stay as they are."""

        def write(metadata: dict[str, Any], _budgets) -> None:
            merged = IndexManifest.merged_into(metadata, manifest)
            metadata.clear()
            metadata.update(merged)

        self._budgets.modify_metadata(write)
        self.manifest = manifest

    @property
    def budgets(self) -> CollectionBudgets:
        """The collection's budget store: what every route writing into this index commits to."""
        return self._budgets

    def budget(self, role: str) -> ReasoningBudget:
        """The stored budget of ``role`` (limits and ledger), as of now."""
        return self._budgets.read(role)

    def set_budget(self, role: str, budget: ReasoningBudget) -> ReasoningBudget:
        """Replace the limits of ``role``'s budget; the ledger (what was spent) is kept."""
        return self._budgets.set_limits(role, budget)

    def _encode(self, inputs: Sequence[Any], role: str, batch_size: int) -> list[EmbeddingResult]:
        """Encode under the stored budget of ``role`` and persist its spend."""
        with self._budgets.spending(role) as budget:
            return self.embedder.encode(inputs, role=role, budget=budget, batch_size=batch_size)

    # -- writing ---------------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | Path],
        *,
        show_progress: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_input_tokens: InputTokenCap = FROM_CONFIG,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        executor: str = "local",
        ray_address: str | None = None,
        workers: int = 1,
        gpus_per_worker: float = 0.0,
    ) -> IndexReport:
        """Index every supported file under ``paths`` (folders walked recursively).

        The document budget is allocated over the whole index, in three passes: (1) every new
        item is embedded without thinking and stored (vector, gate score, not final); (2) the
        items that may think are chosen among the index's non-final items: gate score at or
        above the threshold, highest first (ties by id), within ``max_think_ratio`` of all the
        index's items and the remaining ``token_budget`` (``max_thought_tokens`` reserved
        each); (3) those think and are embedded again, and every other non-final item becomes
        final as it is. The result depends neither on file order, batch size nor workers; a
        run killed in any pass is resumed by the next without redoing or recounting work.

        ``executor="ray"`` runs passes 1 and 3 on a Ray cluster (``ray_address``; a local one
        when ``None``): files load in Ray tasks and ``workers`` actors (``gpus_per_worker``
        GPUs each) load the model once and embed; selection and writes stay here. Needs
        ``twn-rag[ray]``.

        ``max_input_tokens`` and ``max_batch_tokens`` are ``TWNEmbedder.encode``'s: a page whose
        text is cut to the cap is stored with ``twn_text_truncated`` and ``twn_text_tokens_original``.

        Unchanged files are skipped, interrupted ones resumed, changed ones replaced. Each file
        stands alone: one that cannot be read, or whose items cannot all be embedded (a
        processor limit, out of memory, a non-finite vector: the batch is split to isolate the
        item), is reported in ``IndexReport.failures`` with its reason and the others go on.
        An error that is no file's fault (the store, the disk) raises ``IndexingAborted``,
        which carries the report of what was done before it. ``IndexReadOnlyError`` on a
        read-only index, before anything is written.
        """
        self._refuse_writes()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1 or None, got {max_batch_tokens}")
        encode_limits = {"max_input_tokens": max_input_tokens, "max_batch_tokens": max_batch_tokens}
        started = time.perf_counter()
        discovery = discover_files(paths)
        report = IndexReport(failures=list(discovery.failures), skipped=list(discovery.skipped))
        for skipped in discovery.skipped:
            logger.info("skipped %s: %s", skipped.path, skipped.reason)
        files_bar = tqdm(total=len(discovery.files), desc="files", unit="file", disable=not show_progress)
        items_bar = tqdm(desc="items", unit="item", disable=not show_progress)
        current: str | None = None
        try:
            # Made on first need: a run with nothing to embed loads no model and starts no cluster.
            passes = functools.cache(
                lambda: self._passes(
                    executor, batch_size, chunk_size, report, ray_address, workers, gpus_per_worker, encode_limits
                )
            )
            jobs, stale = [], {}
            for path, kind in discovery.files:
                current = str(path)
                job = self._plan_file(path, kind, report, stale)
                if job is None:
                    files_bar.update()
                else:
                    jobs.append(job)
            for job, outcomes in passes().first_pass(jobs) if jobs else ():
                current = str(job.ref.path)
                files_bar.set_postfix_str(utf8_safe(job.ref.path.name), refresh=False)
                try:
                    self._store_file(job, outcomes, report, chunk_size, items_bar)
                    report.files_indexed += 1
                    if stale.get(job.ref.source):  # the file changed: its new version is complete, drop the old one
                        report.items_removed += self._delete_ids(stale[job.ref.source])
                except LoadError as exc:
                    report.failures.append(FileFailure(str(job.ref.path), exc.reason))
                    logger.warning("failed %s: %s", job.ref.path, exc.reason)
                files_bar.update()
            current = None
            self._allocate(passes, report, chunk_size, show_progress)
            report.document_budget = self.budget("document")
        except Exception as exc:
            report.document_budget = self.manifest.budgets["document"]  # as last read: the store may be what failed
            report.timings.wall_s = time.perf_counter() - started
            raise IndexingAborted(report, current, exc) from exc
        finally:
            items_bar.close()
            files_bar.close()
        report.timings.wall_s = time.perf_counter() - started
        return report

    def _passes(self, executor, batch_size, chunk_size, report, ray_address, workers, gpus_per_worker, encode_limits):
        """Where passes 1 and 3 run: here (``LocalPasses``) or on Ray (``RayPasses``)."""
        settings = PassSettings(self.manifest.loader, self.images_dir, batch_size, report.timings, encode_limits)
        if executor == "ray":
            from twn_rag.index.ray_passes import RayPasses

            return RayPasses(
                self._model_reference(),
                settings,
                address=ray_address,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
                dtype="auto" if self._embedder is None else str(self._embedder.model.dtype).removeprefix("torch."),
            )
        embedder = self.embedder  # loaded before the progress bars start
        embedder.check_limits(batch_size, **encode_limits)
        return LocalPasses(embedder, settings, chunk_size)

    def _model_reference(self) -> str:
        """What a Ray worker loads the index's model from: the checkpoint this index was given
        or its stored model id."""
        return self._embedder.model_id if self._embedder is not None else self.manifest.model_id

    def _plan_file(self, path: Path, kind: str, report: IndexReport, stale: dict[str, list[str]]) -> FileJob | None:
        """The pass-1 job of a file, or ``None`` when it is stored complete and unchanged (or
        cannot be read: reported). Ids of a changed file's old version go to ``stale``."""
        started = time.perf_counter()
        try:
            ref = FileRef.describe(path, kind)
        except LoadError as exc:
            report.failures.append(FileFailure(str(path), exc.reason))
            logger.warning("failed %s: %s", path, exc.reason)
            return None
        finally:
            report.timings.load_s += time.perf_counter() - started
        stored = {i: meta for i, meta in self._source_records(ref.source).items() if ref.owns(i)}
        current = {i for i, meta in stored.items() if meta.get("content_hash") == ref.content_hash}
        stale[ref.source] = [i for i in stored if i not in current]
        if any(stored[i].get(LAST_IN_FILE_KEY) for i in current):
            report.files_unchanged += 1
            logger.info("unchanged %s", path)
            if stale[ref.source]:
                report.items_removed += self._delete_ids(stale[ref.source])
            return None
        if current:
            logger.info("resuming %s: %d items already stored", path, len(current))
        return FileJob(ref, current)

    def _store_file(
        self,
        job: FileJob,
        outcomes: Iterator[tuple[DocumentItem, Outcome]],
        report: IndexReport,
        chunk_size: int,
        items_bar,
    ) -> None:
        """Store, in order and chunk by chunk, the pass-1 ``outcomes`` of ``job``'s file.

        Items that could not be embedded are left out (their image files removed) and the rest
        of the file goes on; the file then stays incomplete (no item flagged last), so the next
        run retries just those, and ``LoadError`` reports them. ``LoadError`` from the stream
        (damage part-way through) keeps what was embedded before it."""
        path = job.ref.path
        chunk = _PendingChunk()
        failed: list[tuple[DocumentItem, str]] = []
        try:
            for item, outcome in outcomes:
                if isinstance(outcome, EmbeddingResult):
                    chunk.items.append(item)
                    chunk.results.append(outcome)
                else:
                    failed.append((item, outcome))
                    logger.warning("cannot embed %s of %s: %s", _place(item), item.metadata.get("source"), outcome)
                    self._remove_own_image(item.image_path)
                if len(chunk.items) >= chunk_size:
                    self._flush(chunk, report, path, items_bar, complete=not failed)
                    chunk = _PendingChunk()
        except LoadError as exc:
            self._flush(chunk, report, path, items_bar, complete=False)
            if failed:
                raise LoadError(path, f"{exc.reason}; before that, {_not_embedded(failed)}") from exc
            raise
        self._flush(chunk, report, path, items_bar, complete=not failed)
        if failed:
            raise LoadError(path, f"{_not_embedded(failed)}; the other items are stored, the next run retries")

    def _flush(self, chunk: _PendingChunk, report: IndexReport, path: Path, items_bar, *, complete: bool) -> None:
        """Write the chunk's pass-1 records (not final) and count them in the stored ledger,
        exactly: items once, when this writer stored them new (not those another writer stored
        first). Unless the file is ``complete`` (every item before was stored), no item is
        flagged last in it."""
        if not chunk.items:
            return
        if not complete:
            for item in chunk.items:
                item.metadata[LAST_IN_FILE_KEY] = False
        started = time.perf_counter()
        with self._budgets.exclusive():
            self._budgets.recover_stores(self._records_of_writer)
            tokens = sum(result.thought_tokens for result in chunk.results)
            writer = self._budgets.begin_store("document", tokens)
            added = self.store(chunk.items, chunk.results, writer=writer, final=False)
            thought = sum(
                1 for item, result in zip(chunk.items, chunk.results) if item.id in added and result.thought_used
            )
            self._budgets.finish_store(writer, len(added), thought)
        report.timings.store_s += time.perf_counter() - started
        report.items_added += len(added)
        items_bar.update(len(chunk.items))
        logger.info("stored %d new items of %s (%d in this run)", len(added), path, report.items_added)

    # -- the global allocation: passes 2 and 3 ---------------------------------------------------
    def _allocate(self, passes: Callable[[], Any], report: IndexReport, chunk_size: int, show_progress: bool) -> None:
        """Choose among the index's non-final items those that think (pass 2), have them think
        and store them (pass 3), and make every other non-final item final as it is. Rounds
        repeat while the budget left allows more (thoughts shorter than the tokens reserved
        for them leave room), so a resumed run ends where an uninterrupted one would. Holds this
        machine's budget lock: concurrent adds on one machine never spend the same slack twice."""
        with self._budgets.exclusive():
            while True:
                self._budgets.recover_stores(self._records_of_writer)  # a killed pass 3's thoughts count
                pending = self._pending_records()
                budget = self.budget("document")
                chosen = choose_thinkers(budget, pending)
                if not chosen:
                    break
                logger.info("%d of %d non-final items think (%s)", len(chosen), len(pending), budget.describe())
                bar = tqdm(total=len(chosen), desc="thinking", unit="item", disable=not show_progress)
                try:
                    outcomes = passes().third_pass(think_jobs(chosen, pending), budget.max_thought_tokens)
                    for outcome_chunk in batched(outcomes, chunk_size):  # type: ignore[arg-type]
                        self._store_thoughts(outcome_chunk, report)
                        bar.update(len(outcome_chunk))
                finally:
                    bar.close()
            self._finalize(sorted(pending))

    def _pending_records(self) -> dict[str, dict[str, Any]]:
        """The metadata of every non-final record, by id."""
        pending: dict[str, dict[str, Any]] = {}
        for page in self._pages(where={FINAL_KEY: False}):
            pending.update(zip(page["ids"], (dict(m or {}) for m in page["metadatas"])))
        return pending

    def _store_thoughts(self, outcomes: list[tuple[str, Outcome]], report: IndexReport) -> None:
        """Store pass-3 outcomes exactly: their thought tokens committed first (spent when
        generated), then each record still non-final replaced by its thought's vector and made
        final (one that could not think is made final as it is); the thoughts counted once,
        for the records this writer updated (read back by the writer token)."""
        started = time.perf_counter()
        for item_id, outcome in outcomes:
            if isinstance(outcome, str):
                logger.warning("item %s keeps its embedding without a thought: %s", item_id, outcome)
        with self._budgets.exclusive():
            self._budgets.recover_stores(self._records_of_writer)
            tokens = sum(o.thought_tokens for _, o in outcomes if isinstance(o, EmbeddingResult))
            writer = self._budgets.begin_store("document", tokens)
            current = self._metadatas_of([item_id for item_id, _ in outcomes])
            todo = [(i, o) for i, o in outcomes if i in current and current[i].get(FINAL_KEY) is False]
            thought = [(i, o) for i, o in todo if isinstance(o, EmbeddingResult)]
            update_chunked(
                self._collection,
                ids=[i for i, _ in thought],
                metadatas=[
                    {**current[i], **result_metadata(o), FINAL_KEY: True, THINK_WRITER_KEY: writer} for i, o in thought
                ],
                embeddings=np.stack([o.vector for _, o in thought]).astype(np.float32) if thought else None,
                max_batch_size=self._max_batch_size,
            )
            unchanged = [i for i, o in todo if isinstance(o, str)]
            self._finalize(unchanged, current)
            # a writer on another machine may replace the same records: read back once its write landed
            self._budgets.settle()
            won = [
                i for i, m in self._metadatas_of([i for i, _ in thought]).items() if m.get(THINK_WRITER_KEY) == writer
            ]
            self._budgets.finish_store(writer, 0, len(won))
        report.items_thought += len(won)
        report.timings.store_s += time.perf_counter() - started

    def _finalize(self, ids: Sequence[str], current: dict[str, dict[str, Any]] | None = None) -> None:
        """Make the records ``ids`` final as they are (those still non-final)."""
        if not ids:
            return
        with self._budgets.exclusive():
            current = current if current is not None else self._metadatas_of(ids)
            todo = [i for i in ids if i in current and current[i].get(FINAL_KEY) is False]
            update_chunked(
                self._collection,
                ids=todo,
                metadatas=[{**current[i], FINAL_KEY: True} for i in todo],
                embeddings=None,
                max_batch_size=self._max_batch_size,
            )

    def _metadatas_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), self._max_batch_size):
            page = self._collection.get(ids=list(ids[start : start + self._max_batch_size]), include=["metadatas"])
            found.update(zip(page["ids"], (dict(m or {}) for m in page["metadatas"])))
        return found

    def _records_of_writer(self, writer: str) -> tuple[int, int]:
        """``(records, records that thought)`` that the store tagged ``writer`` wrote: records
        it stored (pass 1), and thoughts it stored into existing records (pass 3)."""
        stored = [m or {} for m in self._collection.get(where={WRITER_KEY: writer}, include=["metadatas"])["metadatas"]]
        rethought = self._collection.get(where={THINK_WRITER_KEY: writer}, include=["metadatas"])["metadatas"]
        thought = sum(1 for m in stored if m.get(THOUGHT_USED_KEY))
        thought += sum(1 for m in rethought if (m or {}).get(THOUGHT_USED_KEY))
        return len(stored), thought

    def store(
        self,
        items: Sequence[DocumentItem],
        results: Sequence[EmbeddingResult],
        *,
        writer: str | None = None,
        final: bool = True,
    ) -> set[str]:
        """Write items with their embeddings (computed here by ``add``, or elsewhere by the
        same model): images saved under ``images/``, records added in order in slices within
        Chroma's max batch size; ids already stored are left as they are. Pixels are released
        afterwards. Returns the ids this call stored new: records are tagged with a ``writer``
        token (one is made when not given) and read back, so a record another writer stored
        first, even in the same instant on another machine, is not counted as ours. Records
        not ``final`` await ``add``'s global selection (they are searchable meanwhile)."""
        if len(items) != len(results):
            raise ValueError(f"{len(items)} items but {len(results)} embeddings")
        if not items:
            return set()
        writer = writer or uuid.uuid4().hex
        vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
        if vectors.shape[1] != self.manifest.dimension:
            raise IndexMismatchError(
                f"vectors of dimension {vectors.shape[1]} cannot go into index {self.location} "
                f"(dimension {self.manifest.dimension})"
            )
        for item in items:
            item.save_image(self.images_dir)
        add_chunked(
            self._collection,
            ids=[item.id for item in items],
            embeddings=vectors,
            metadatas=[
                {**record_metadata(item, result, self.index_dir), WRITER_KEY: writer, FINAL_KEY: final}
                for item, result in zip(items, results)
            ],
            documents=[item.text for item in items],
            max_batch_size=self._max_batch_size,
        )
        for item in items:
            item.release_pixels()
        self._budgets.settle()  # another machine's writer may store the same ids
        return self._ids_written_by(writer, [item.id for item in items])

    def _ids_written_by(self, writer: str, ids: Sequence[str]) -> set[str]:
        ours: set[str] = set()
        for start in range(0, len(ids), self._max_batch_size):
            found = self._collection.get(ids=list(ids[start : start + self._max_batch_size]), include=["metadatas"])
            ours |= {i for i, m in zip(found["ids"], found["metadatas"]) if (m or {}).get(WRITER_KEY) == writer}
        return ours

    # -- reading ---------------------------------------------------------------------------
    def _source_records(self, source: str) -> dict[str, dict[str, Any]]:
        found = self._collection.get(where={"source": source}, include=["metadatas"])
        return {i: dict(m or {}) for i, m in zip(found["ids"], found["metadatas"])}

    def _pages(self, where: dict[str, Any] | None = None, include: Sequence[str] = ("metadatas",)) -> Iterator[dict]:
        """The records matching ``where`` (all without), as ``collection.get`` pages of at most
        the client's batch size, in storage order."""
        offset = 0
        while True:
            page = self._collection.get(where=where, limit=self._max_batch_size, offset=offset, include=list(include))
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])

    def _iter_metadatas(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for page in self._pages():
            yield from zip(page["ids"], (dict(m or {}) for m in page["metadatas"]))

    def search(
        self,
        query: str | None = None,
        image: Any = None,
        k: int = 5,
        where: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` items closest to a text ``query``, an ``image`` (path or PIL), or both,
        best first. The query is embedded under the index's query budget (spend recorded);
        its result (thought, gate score) is kept in ``last_query``.
        ``where`` is a Chroma metadata filter, e.g. ``{"source_type": "pdf"}``."""
        hits, self.last_query = self.search_with_query(query, image, k, where)
        return hits

    def items(self, where: dict[str, Any] | None = None) -> list[SearchHit]:
        """Every stored item, or those matching the Chroma metadata filter ``where`` (e.g.
        ``{THOUGHT_USED_KEY: True}`` from ``twn_rag.result_metadata``: the documents that
        thought), in storage order, as ``SearchHit``s whose ``score`` is NaN (no query was asked)."""
        hits: list[SearchHit] = []
        for page in self._pages(where, include=("metadatas", "documents")):
            as_query = {key: [page[key]] for key in ("ids", "metadatas", "documents")}
            hits += hits_from_query({**as_query, "distances": [[math.nan] * len(page["ids"])]}, self.index_dir)
        return hits

    def info(self) -> IndexInfo:
        """Counts by modality and source, the model, and each role's budget and spend."""
        manifest = self._read_manifest()
        modalities: dict[str, int] = {}
        sources: set[str] = set()
        items = 0
        for _, metadata in self._iter_metadatas():
            items += 1
            modality = str(metadata.get("modality", "unknown"))
            modalities[modality] = modalities.get(modality, 0) + 1
            sources.add(str(metadata.get("source", "")))
        return IndexInfo(
            collection=self.name,
            location=self.location,
            model_id=manifest.model_id,
            dimension=manifest.dimension,
            items=items,
            sources=len(sources),
            modalities=dict(sorted(modalities.items())),
            budgets=manifest.budgets,
            loader=manifest.loader,
        )

    # -- deleting --------------------------------------------------------------------------
    def delete_source(self, path: str | Path) -> int:
        """Remove every item of the source file ``path`` (and its page/frame images);
        returns how many were removed."""
        return self._delete_ids(list(self._source_records(canonical_source(path))))

    def _delete_ids(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        for start in range(0, len(ids), self._max_batch_size):
            batch = list(ids[start : start + self._max_batch_size])
            found = self._collection.get(ids=batch, include=["metadatas"])
            self._collection.delete(ids=batch)
            for metadata in found["metadatas"]:
                self._remove_own_image(resolve_image_path((metadata or {}).get("image_path"), self.index_dir))
        return len(ids)

    def _remove_own_image(self, image_path: str | None) -> None:
        """Delete a page or frame image the index wrote (never a user's image file)."""
        if image_path is not None and Path(image_path).parent == self.images_dir.resolve():
            Path(image_path).unlink(missing_ok=True)

    # -- searching for the framework retrievers ----------------------------------------------
    def search_with_query(
        self,
        query: str | None = None,
        image: Any = None,
        k: int = 5,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[SearchHit], EmbeddingResult]:
        """``search``, returning the hits with the embedded query (thought, gate score) instead
        of keeping it in ``last_query``, so concurrent searches each get their own."""
        if query is None and image is None:
            raise ValueError("search needs a text query, an image, or both")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        request: dict[str, Any] = {}
        if query is not None:
            request["text"] = query
        if image is not None:
            request["image"] = image
        [result] = self._encode([request], "query", batch_size=1)
        raw = self._collection.query(
            query_embeddings=result.vector[None, :],
            n_results=k,
            where=where,
            include=["metadatas", "documents", "distances"],
        )
        return hits_from_query(raw, self.index_dir), result

    def as_llama_index_retriever(self, similarity_top_k: int = 5, where: dict[str, Any] | None = None, **kwargs: Any):
        """A LlamaIndex ``BaseRetriever`` over this index (``TWNLlamaIndexRetriever``): each
        query is embedded by ``search`` (text and/or ``QueryBundle.image_path``) and the
        ``similarity_top_k`` hits (filtered by ``where``) come back as ``NodeWithScore`` of
        ``ImageNode`` / ``TextNode``. ``kwargs`` go to ``BaseRetriever`` (``callback_manager``...).
        Needs llama-index-core."""
        from twn_rag.index.llama_index_retriever import TWNLlamaIndexRetriever

        return TWNLlamaIndexRetriever(self, similarity_top_k=similarity_top_k, where=where, **kwargs)

    def as_langchain_retriever(self, k: int = 5, where: dict[str, Any] | None = None, **kwargs: Any):
        """A LangChain ``BaseRetriever`` over this index (``TWNLangChainRetriever``): each query
        is embedded by ``search`` and the ``k`` hits (filtered by ``where``) come back as
        ``Document``s. ``kwargs`` are the retriever's other fields (``tags``, ``metadata``...).
        Needs langchain-core."""
        from twn_rag.index.langchain_retriever import TWNLangChainRetriever

        return TWNLangChainRetriever(index=self, k=k, where=where, **kwargs)
