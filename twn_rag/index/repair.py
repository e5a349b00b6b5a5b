"""``check --repair``: the repairs of the problems ``twn_rag.index.check`` found.

Run it while no other process indexes into the index: an image written ahead of its record by
a running ``index`` looks orphaned. Writers on this machine are kept out while records are
deleted and the ledger is updated (the index's budget lock is held).

- orphan images are removed; extra copies of an item are deleted (the record with the stable
  id is kept, and an image file another record names is kept);
- files with missing images, missing or unreachable items, or several stored versions are
  re-queued: their lost records and their final (``last_in_file``) record are deleted, so the
  next ``twn-rag index`` of the file re-renders its images and re-embeds what is not stored
  (one item more than was lost: the final one). A file whose source is gone is left as it is;
- stores this machine began and never finished are counted (``budget_store.recover_stores``);
  the document ledger is raised to what the records hold;
- a database that cannot be opened is moved aside (``chroma.damaged-<time>``), never deleted,
  so that the next ``index`` builds a new index (every document must be indexed again);
- SQLite integrity damage in a database that opens is left to the user (back up, rebuild).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from twn_rag.index.check import (
    DATABASE,
    DUPLICATE,
    LEDGER,
    ORPHAN_IMAGE,
    PENDING_STORE,
    CheckReport,
    Problem,
    RecordCounts,
    pending_stores,
    read_records,
)
from twn_rag.index.client import forget_cached_system
from twn_rag.index.directory import CHROMA_SUBDIR, os_error
from twn_rag.index.records import WRITER_KEY
from twn_rag.index.twn_index import TWNIndex

logger = logging.getLogger(__name__)


def _delete_records(index: TWNIndex, ids: Iterable[str], records: Sequence) -> int:
    """Delete the records ``ids``, and the page and frame images that only they named."""
    doomed = set(ids)
    if not doomed:
        return 0
    ordered = sorted(doomed)
    for start in range(0, len(ordered), index._max_batch_size):
        index._collection.delete(ids=ordered[start : start + index._max_batch_size])
    kept_images = {r.image for r in records if r.id not in doomed and r.image is not None}
    for record in records:
        if record.id in doomed and record.image is not None and record.image not in kept_images:
            index._remove_own_image(str(record.image))
    return len(doomed)


def _raise_ledger(index: TWNIndex) -> None:
    """Raise the document ledger to at least what the records hold (beyond unfinished stores)."""
    records = read_records(index)

    def raise_to_records(metadata, budgets) -> None:
        pending = pending_stores(metadata)
        stored = RecordCounts.of(records)
        uncounted = RecordCounts.of(r for r in records if r.metadata.get(WRITER_KEY) in pending)
        ledger = budgets["document"].ledger
        ledger.items_seen = max(ledger.items_seen, stored.items - uncounted.items)
        ledger.items_thought = max(ledger.items_thought, stored.thought - uncounted.thought)
        ledger.thought_tokens = max(ledger.thought_tokens, stored.thought_tokens)

    index.budgets.modify_metadata(raise_to_records)


def _mark(problem: Problem, action: str, repaired: bool = True) -> None:
    problem.repaired = repaired
    problem.action = action


def repair_problems(index: TWNIndex, report: CheckReport, records: Sequence) -> CheckReport:
    """Repair what can be repaired of ``report``'s problems (module docstring), marking each
    ``repaired`` (or not) with what was done; ``report.requeued`` lists the files to index again."""
    report.repair_ran = True
    requeued: set[str] = set()
    with index.budgets.exclusive():
        for problem in report.problems:
            if problem.unrepairable is not None or problem.kind == DATABASE:
                _mark(problem, problem.unrepairable or "cannot be repaired by twn-rag", repaired=False)
        if any(p.kind == PENDING_STORE for p in report.problems):
            index.budgets.recover_stores(index._records_of_writer)
            still = pending_stores(index.budgets.metadata())
            for problem in (p for p in report.problems if p.kind == PENDING_STORE):
                finished = problem.writer not in still
                _mark(problem, "counted" if finished else "left to the machine that began it", finished)
        fixable = [p for p in report.problems if not p.repaired and not p.action]
        deleted = _delete_records(index, (i for p in fixable for i in p.delete_ids), records)
        logger.info("repair of %s: deleted %d records", index.location, deleted)
        for problem in fixable:
            if problem.kind == ORPHAN_IMAGE:
                for path in problem.unlink:
                    Path(path).unlink(missing_ok=True)
                _mark(problem, f"removed {len(problem.unlink)} files")
            elif problem.kind == DUPLICATE:
                _mark(problem, f"deleted {len(problem.delete_ids)} extra records")
            elif problem.kind == LEDGER:
                _raise_ledger(index)
                _mark(problem, "raised the ledger to what the records hold")
            elif problem.requeue and problem.source is not None:
                requeued.add(problem.source)
                _mark(problem, "re-queued: the next `twn-rag index` of it restores it")
    report.requeued = sorted(requeued)
    return report


def move_damaged_database(index_dir: Path, report: CheckReport) -> Path:
    """Move the database folder of ``index_dir`` aside (``chroma.damaged-<time>``) so that the next
    ``index`` builds a new index; marks ``report``'s database problem repaired. Returns where it went."""
    chroma_dir = index_dir / CHROMA_SUBDIR
    target = index_dir / f"{CHROMA_SUBDIR}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        chroma_dir.rename(target)
    except OSError as exc:  # a read-only index, most likely
        raise os_error(index_dir, exc, writing=True) from exc
    forget_cached_system(str(chroma_dir))  # a client this process cached would write to the moved files
    report.repair_ran = True
    for problem in report.problems:
        if problem.kind == DATABASE:
            _mark(
                problem,
                f"moved the damaged database to {target}: the next `twn-rag index` builds a new index "
                "(index every document again, with --model unless it is the default)",
            )
    return target
