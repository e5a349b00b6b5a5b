"""What is wrong with an index (``TWNIndex.check``, ``twn-rag check``): each finding is a
``Problem`` of one kind, with the repair ``twn_rag.index.repair`` would make for it.

- ``database``: the database cannot be opened (``IndexDamagedError``), or SQLite's
  ``PRAGMA integrity_check`` (through a read-only ``mode=ro`` connection) finds damage;
- ``missing_image``: records whose page or frame image file is gone (search would name files
  that do not exist); ``orphan_image``: files under ``images/`` that no record names;
- ``duplicate``: more than one record for one item (source, content hash, page or time);
- ``versions``: records of more than one version of one source (an interrupted replacement);
- ``incomplete``: a file whose final item (``last_in_file``) is not stored (an interrupted run,
  an item that failed), or that is marked complete while items before its last are missing;
- ``unreachable``: records that vector search cannot return: the HNSW index lost them (its
  folder deleted or damaged) although the database still lists them, so ``info`` counts them
  and ``search`` never finds them. Found by listing what a query for every record returns and
  by querying each record's own vector;
- ``ledger``: the document ledger counts fewer items, thoughts or thought tokens than the
  records hold (plus what unfinished stores wrote);
- ``pending_store``: stores registered in ``twn_budget_pending`` that never finished.

Repairs that re-embed go through the next ``twn-rag index`` of the file: records are deleted
(the file's ``last_in_file`` record among them, so the file is no longer complete), and the
next run re-renders every page image of the file and re-embeds what is missing; stable ids
mean nothing is duplicated.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twn_rag.index.budget_store import PENDING_KEY
from twn_rag.index.directory import CHROMA_SUBDIR
from twn_rag.index.errors import IndexDamagedError
from twn_rag.index.records import LAST_IN_FILE_KEY, WRITER_KEY, reachable_ids, resolve_image_path
from twn_rag.index.report import printable
from twn_rag.index.twn_index import DEFAULT_COLLECTION, TWNIndex
from twn_rag.result_metadata import recorded_result

DATABASE = "database"
MISSING_IMAGE = "missing_image"
ORPHAN_IMAGE = "orphan_image"
DUPLICATE = "duplicate"
VERSIONS = "versions"
INCOMPLETE = "incomplete"
UNREACHABLE = "unreachable"
LEDGER = "ledger"
PENDING_STORE = "pending_store"

# A record is found by its own vector when it is among this many nearest (or an identical vector is).
SELF_QUERY_K = 10
_IDENTICAL_DISTANCE = 1e-6
# Ids made by ``FileRef.item_id``: content hash, source digest, place in the file.
_STABLE_ID = re.compile(r"(?P<content>[0-9a-f]{32})-(?P<digest>[0-9a-f]{8})-\w+")
_SHOWN = 5  # how many names or numbers a message lists


@dataclass
class Problem:
    """One thing wrong with the index. ``source``: the file concerned, when one is; ``ids``:
    the records concerned; ``paths``: the files concerned. The repair: ``delete_ids`` (records
    to delete), ``unlink`` (image files to remove), ``requeue`` (the next ``twn-rag index`` of
    ``source`` restores it); ``writer``: the store of a ``pending_store``; ``unrepairable``: why
    ``--repair`` cannot, when it cannot.
    ``repaired`` and ``action`` say what ``--repair`` did."""

    kind: str
    message: str
    source: str | None = None
    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    delete_ids: list[str] = field(default_factory=list)
    unlink: list[str] = field(default_factory=list)
    requeue: bool = False
    writer: str | None = None
    unrepairable: str | None = None
    repaired: bool = False
    action: str = ""


@dataclass
class CheckReport:
    """What ``check`` found in the index at ``location``: counts (``None`` where the database
    could not be read), the problems, whether ``--repair`` ran, and the sources to index
    again to finish the repairs (``requeued``)."""

    location: str
    collection: str
    records: int | None = None
    image_files: int | None = None
    reachable: int | None = None
    problems: list[Problem] = field(default_factory=list)
    repair_ran: bool = False
    requeued: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def ok(self) -> bool:
        """Healthy, or every problem repaired (the re-queued files wait for the next ``index``)."""
        return all(problem.repaired for problem in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy, "ok": self.ok}

    def summary_lines(self) -> list[str]:
        """For people: what was checked, each problem (with what ``--repair`` did, or why it
        cannot), and the verdict. Names are escaped (``printable``)."""
        counted = "the database cannot be read"
        if self.records is not None:
            counted = (
                f"{self.records} records, {self.image_files} image files, "
                f"vector search reaches {self.reachable} of {self.records}"
            )
        lines = [f"index {printable(self.location)} (collection {self.collection!r}): {counted}"]
        for problem in self.problems:
            lines.append(f"PROBLEM {problem.kind}: {printable(problem.message)}")
            if self.repair_ran:
                lines.append(f"  {'repaired' if problem.repaired else 'not repaired'}: {printable(problem.action)}")
            elif problem.unrepairable is not None:
                lines.append(f"  --repair cannot repair it: {printable(problem.unrepairable)}")
        repaired = sum(1 for problem in self.problems if problem.repaired)
        if self.healthy:
            lines.append("healthy")
        elif self.repair_ran:
            lines.append(f"{len(self.problems)} problems, {repaired} repaired")
        else:
            repairable = sum(1 for problem in self.problems if problem.unrepairable is None)
            lines.append(f"{len(self.problems)} problems; --repair repairs {repairable} of them")
        return lines


@dataclass(frozen=True)
class _Record:
    id: str
    metadata: dict[str, Any]
    image: Path | None

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def version(self) -> tuple[str, str]:
        return self.source, str(self.metadata.get("content_hash", ""))

    @property
    def place(self) -> tuple[str, float]:
        """Where the item is in its file: ``("page", 3)``, ``("frame", 12)``, ``("t", 1.5)``."""
        for key, name in (("page", "page"), ("frame_index", "frame"), ("timestamp", "t")):
            if key in self.metadata:
                return name, float(self.metadata[key])
        return "item", 0.0

    @property
    def is_last(self) -> bool:
        return bool(self.metadata.get(LAST_IN_FILE_KEY))

    @property
    def where(self) -> str:
        """The place for messages: ``page 3``, ``frame 12``, ``t=1.5s`` or ``the item``."""
        kind, value = self.place
        return {"page": f"page {_number(value)}", "frame": f"frame {_number(value)}", "t": f"t={value:g}s"}.get(
            kind, "the item"
        )


def _listing(values: Iterable[Any]) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _source_gone(source: str) -> str | None:
    """Why the file ``source`` cannot be indexed again, or ``None`` when it can."""
    if Path(source).is_file():
        return None
    return f"its source {source} no longer exists: remove its items with `twn-rag delete`"


def _requeued(source: str, versions: Iterable[list[_Record]], lost: Iterable[str] = ()) -> dict[str, Any]:
    """The repair that has the next ``twn-rag index`` of ``source`` redo it: delete the ``lost``
    records and the final (``last_in_file``) record of each of ``versions``, so the file is no
    longer complete; the next run re-renders its images and re-embeds what is not stored."""
    lost = list(lost)
    flagged = [r.id for version in versions for r in version if r.is_last and r.id not in lost]
    return {"delete_ids": lost + flagged, "requeue": True, "unrepairable": _source_gone(source)}


# -- the database -----------------------------------------------------------------------------
def sqlite_integrity(database: Path) -> list[str]:
    """What ``PRAGMA integrity_check`` reports for the SQLite file ``database``, opened read-only
    (``[]`` when it says ``ok``)."""
    try:
        with closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as connection:
            rows = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def database_problems(database: Path | None) -> list[Problem]:
    if database is None:  # a Chroma server checks its own storage
        return []
    findings = sqlite_integrity(database)
    if not findings:
        return []
    return [
        Problem(
            DATABASE,
            f"SQLite integrity check of {database} failed: {_listing(findings)}",
            paths=[str(database)],
            unrepairable="back up the index; move its chroma folder aside and index the documents again",
        )
    ]


# -- records and images -----------------------------------------------------------------------
def image_problems(records: Sequence[_Record], images_dir: Path) -> list[Problem]:
    """Records whose image file is missing (by source), and image files no record names.
    Files in ``images/`` are named by item id, so a file named after a record is never an orphan
    (an index moved with absolute image paths finds its images again by re-indexing). Missing
    page and frame images are restored by the next ``index`` of their file, once it is no longer
    complete: its final record is deleted (``_requeued``); a missing image file that was the
    source itself cannot be restored."""
    missing = [r for r in records if r.image is not None and not r.image.exists()]
    problems = _per_source(MISSING_IMAGE, records, missing, "the image files of {} items are missing")
    if images_dir.is_dir():
        named = {r.image.name for r in records if r.image is not None} | {r.id for r in records}
        orphans = sorted(p for p in images_dir.iterdir() if p.is_file() and p.name not in named and p.stem not in named)
        if orphans:
            problems.append(
                Problem(
                    ORPHAN_IMAGE,
                    f"{len(orphans)} image files under {images_dir} belong to no record "
                    f"({_listing(p.name for p in orphans)})",
                    paths=[str(p) for p in orphans],
                    unlink=[str(p) for p in orphans],
                )
            )
    return problems


def _extra_copies(group: list[_Record]) -> list[_Record]:
    """The records of one item beyond the first: the one with a stable id (``FileRef.item_id``)
    is kept; stable ids of different source digests are different files (two names that escape
    to one stored source), not copies."""
    keepers: dict[str, _Record] = {}
    for record in sorted(group, key=lambda r: r.id):
        match = _STABLE_ID.fullmatch(record.id)
        if match is not None and match["content"] == record.version[1][:32]:
            keepers.setdefault(match["digest"], record)
    if not keepers:
        keepers[""] = min(group, key=lambda r: r.id)
    kept = {r.id for r in keepers.values()}
    return [r for r in group if r.id not in kept]


def duplicate_problems(records: Sequence[_Record]) -> list[Problem]:
    problems = []
    for (source, _content, _place), group in sorted(_grouped(records, lambda r: (*r.version, r.place)).items()):
        extra = _extra_copies(group) if len(group) > 1 else []
        if extra:
            problems.append(
                Problem(
                    DUPLICATE,
                    f"{source}: {len(group)} records for {group[0].where} ({_listing(r.id for r in group)})",
                    source=source,
                    ids=[r.id for r in group],
                    delete_ids=[r.id for r in extra],
                )
            )
    return problems


def _grouped(records: Iterable[_Record], key: Callable[[_Record], Hashable]) -> dict[Any, list[_Record]]:
    groups: dict[Any, list[_Record]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    return groups


def _versions(records: Iterable[_Record]) -> dict[tuple[str, str], list[_Record]]:
    return _grouped(records, lambda r: r.version)


def _per_source(kind: str, records: Sequence[_Record], lost: Sequence[_Record], what: str) -> list[Problem]:
    """One problem of ``kind`` per source of the ``lost`` records (``what``: a phrase with ``{}``
    for how many), each re-queuing its file (``_requeued``); an ``unreachable`` record is deleted
    too, since a record that is stored is never written again."""
    versions = _versions(records)
    return [
        Problem(
            kind,
            f"{source}: {what.format(len(gone))} ({_listing(r.where for r in gone)})",
            source=source,
            ids=[r.id for r in gone],
            paths=[str(r.image) for r in gone if r.image is not None] if kind == MISSING_IMAGE else [],
            **_requeued(
                source,
                [versions[v] for v in {r.version for r in gone}],
                [r.id for r in gone] if kind == UNREACHABLE else [],
            ),
        )
        for source, gone in sorted(_grouped(lost, lambda r: r.source).items())
    ]


def _missing_before(version: list[_Record], last: _Record) -> list[str]:
    """The places of the items that should be stored before ``last``, the file's final item,
    and are not: pages 1..N, or frames from 0 on (a clip item covers ``frame_count`` frames)."""
    kind, end = last.place
    present = sorted({r.place[1] for r in version if r.place[0] == kind})
    if kind == "page":
        declared = int(last.metadata.get("page_count", end))
        return [f"page {p}" for p in range(1, max(int(end), declared) + 1) if p not in present]
    if kind == "frame":
        counts = {r.place[1]: int(r.metadata.get("frame_count", 1)) for r in version if r.place[0] == kind}
        missing, expected = [], 0.0
        for start in present:
            if start > expected + 1:
                missing.append(f"frames {_number(expected)}-{_number(start - 1)}")
            elif start > expected:
                missing.append(f"frame {_number(expected)}")
            expected = max(expected, start + counts[start])
        return missing
    return []


def completeness_problems(records: Sequence[_Record]) -> list[Problem]:
    versions = _versions(records)
    by_source = _grouped(records, lambda r: r.source)
    problems = []
    for (source, _content), version in sorted(versions.items()):
        flagged = [r for r in version if r.is_last]
        if not flagged:  # the next index resumes it as it is
            problems.append(
                Problem(
                    INCOMPLETE,
                    f"{source}: {len(version)} items stored, but not its last: the file is not complete "
                    "(an interrupted run, or items that failed)",
                    source=source,
                    ids=[r.id for r in version],
                    **_requeued(source, []),
                )
            )
            continue
        missing = _missing_before(version, max(flagged, key=lambda r: r.place[1]))
        if missing:
            problems.append(
                Problem(
                    INCOMPLETE,
                    f"{source}: marked complete, yet missing {_listing(missing)}",
                    source=source,
                    ids=[r.id for r in version],
                    **_requeued(source, [version]),
                )
            )
    for source, stored in sorted(by_source.items()):
        count = len({r.version for r in stored})
        if count > 1:  # the next index of the file keeps its current version only
            problems.append(
                Problem(
                    VERSIONS,
                    f"{source}: {count} versions are stored (a replacement was interrupted)",
                    source=source,
                    **_requeued(source, []),
                )
            )
    return problems


# -- vector search ----------------------------------------------------------------------------
def _readable_vectors(collection, ids: list[str]) -> dict[str, np.ndarray]:
    """The stored vectors of ``ids``; chromadb fails a whole read when one vector is gone, so a
    failed read is split until the records whose vectors are gone are left out."""
    try:
        found = collection.get(ids=ids, include=["embeddings"])
    except Exception:  # chromadb InternalError "Error finding id"
        if len(ids) == 1:
            return {}
        middle = len(ids) // 2
        return {**_readable_vectors(collection, ids[:middle]), **_readable_vectors(collection, ids[middle:])}
    return dict(zip(found["ids"], np.asarray(found["embeddings"], dtype=np.float32)))


def _not_found_by_own_vector(collection, vectors: dict[str, np.ndarray], count: int) -> list[str]:
    ids = list(vectors)
    found = collection.query(
        query_embeddings=np.stack([vectors[i] for i in ids]), n_results=min(SELF_QUERY_K, count), include=["distances"]
    )
    return [
        own
        for own, hits, distances in zip(ids, found["ids"], found["distances"])
        if own not in hits and not (distances and distances[0] <= _IDENTICAL_DISTANCE)
    ]


def unreachable_ids(collection, ids: Sequence[str], dimension: int, batch_size: int) -> list[str]:
    """The records of ``ids`` that vector search cannot return: absent from what a query for
    every record returns, or whose vector cannot be read, or not found by their own vector."""
    reachable = reachable_ids(collection, dimension)
    lost = [i for i in ids if i not in reachable]
    count = len(ids)
    candidates = [i for i in ids if i in reachable]
    for start in range(0, len(candidates), batch_size):
        batch = candidates[start : start + batch_size]
        vectors = _readable_vectors(collection, batch)
        lost += [i for i in batch if i not in vectors]
        if vectors:
            lost += _not_found_by_own_vector(collection, vectors, count)
    return lost


def reach_problems(records: Sequence[_Record], unreachable: Iterable[str]) -> list[Problem]:
    lost = set(unreachable)
    return _per_source(
        UNREACHABLE, records, [r for r in records if r.id in lost], "vector search cannot reach {} of its items"
    )


# -- the ledger -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordCounts:
    """What the records hold that the document ledger must count: items, items that thought,
    their thought tokens."""

    items: int = 0
    thought: int = 0
    thought_tokens: int = 0

    @classmethod
    def of(cls, records: Iterable[_Record]) -> RecordCounts:
        items = thought = tokens = 0
        for record in records:
            items += 1
            recorded = recorded_result(record.metadata)
            if recorded is not None and recorded.thought is not None:
                thought += 1
                tokens += recorded.thought_tokens
        return cls(items, thought, tokens)


def pending_stores(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stores under way or interrupted, by writer token (``budget_store.begin_store``)."""
    return json.loads(str(metadata.get(PENDING_KEY, "{}")))


def ledger_problems(index: TWNIndex, records: Sequence[_Record]) -> list[Problem]:
    """The ledger must count at least what the records hold; the records of unfinished stores
    are not counted yet (their thought tokens are: they were committed before writing)."""
    pending = pending_stores(index.budgets.metadata())
    problems = [
        Problem(
            PENDING_STORE,
            f"a store (writer {writer}) began and never finished: its "
            f"{sum(1 for r in records if r.metadata.get(WRITER_KEY) == writer)} records are not counted yet "
            "(interrupted, or under way in another process)",
            ids=[r.id for r in records if r.metadata.get(WRITER_KEY) == writer],
            writer=writer,
        )
        for writer in sorted(pending)
    ]
    stored = RecordCounts.of(records)
    uncounted = RecordCounts.of(r for r in records if r.metadata.get(WRITER_KEY) in pending)
    ledger = index.budget("document").ledger
    shortfalls = [
        (name, counted, needed)
        for name, counted, needed in (
            ("items_seen", ledger.items_seen + uncounted.items, stored.items),
            ("items_thought", ledger.items_thought + uncounted.thought, stored.thought),
            ("thought_tokens", ledger.thought_tokens, stored.thought_tokens),
        )
        if counted < needed
    ]
    if shortfalls:
        said = "; ".join(f"{name} {counted} < {needed} in the records" for name, counted, needed in shortfalls)
        problems.append(Problem(LEDGER, f"the document ledger counts less than is stored: {said}"))
    return problems


# -- everything -------------------------------------------------------------------------------
def read_records(index: TWNIndex) -> list[_Record]:
    return [
        _Record(record_id, metadata, _image_of(metadata, index.index_dir))
        for record_id, metadata in index._iter_metadatas()
    ]


def _image_of(metadata: dict[str, Any], index_dir: Path) -> Path | None:
    path = resolve_image_path(metadata.get("image_path"), index_dir)
    return None if path is None else Path(path)


def find_problems(index: TWNIndex, records: Sequence[_Record]) -> CheckReport:
    """Every check on ``index`` whose ``records`` are given (``read_records``); nothing is changed."""
    unreachable = unreachable_ids(
        index._collection, [r.id for r in records], index.manifest.dimension, index._max_batch_size
    )
    images = index.images_dir
    return CheckReport(
        location=index.location,
        collection=index.name,
        records=len(records),
        image_files=sum(1 for p in images.iterdir() if p.is_file()) if images.is_dir() else 0,
        reachable=len(records) - len(set(unreachable)),
        problems=[
            *database_problems(index.database_path),
            *image_problems(records, images),
            *duplicate_problems(records),
            *completeness_problems(records),
            *reach_problems(records, unreachable),
            *ledger_problems(index, records),
        ],
    )


def check_index_dir(
    index_dir: str | Path,
    *,
    collection: str = DEFAULT_COLLECTION,
    chroma_url: str | None = None,
    repair: bool = False,
) -> CheckReport:
    """Check the index in ``index_dir`` (``TWNIndex.check``), also when its database cannot be
    opened: that is a ``database`` problem, which ``repair`` handles by moving the database aside
    (``twn_rag.index.repair.move_damaged_database``). Without ``repair`` a read-only index is
    checked as it is. ``IndexUnusableError`` when there is no index, or ``repair`` cannot write."""
    try:
        index = TWNIndex.open(
            index_dir, collection=collection, chroma_url=chroma_url, read_only=False if repair else None
        )
    except IndexDamagedError as exc:
        index_dir = Path(index_dir).expanduser().resolve()
        report = CheckReport(location=str(index_dir / CHROMA_SUBDIR), collection=collection)
        report.problems.append(Problem(DATABASE, exc.damage, paths=[str(index_dir / CHROMA_SUBDIR)]))
        if repair:
            from twn_rag.index.repair import move_damaged_database

            move_damaged_database(index_dir, report)
        return report
    try:
        return index.check(repair=repair)
    finally:
        index.close()
