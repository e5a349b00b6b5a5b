"""``twn_rag/index/check.py`` and ``repair.py`` (``TWNIndex.check``): each kind of damage,
done to a real index, is found; ``repair`` and the next ``add`` restore the index, with no
duplicate and nothing else re-embedded."""

import json
import shutil
import sqlite3

import pytest
from support.index_damage import (
    create_small_hnsw_collection,
    delete_images,
    delete_vector_segments,
    empty_database,
    release_chroma,
    write_documents,
)

from twn_rag.index import TWNIndex
from twn_rag.index.budget_store import PENDING_KEY
from twn_rag.index.check import check_index_dir, sqlite_integrity
from twn_rag.index.records import LAST_IN_FILE_KEY, WRITER_KEY
from twn_rag.result_metadata import recorded_result


def _docs(built_index_dir):
    return built_index_dir.parent / "docs"


def _records(index):
    found = index._collection.get(include=["metadatas"])
    return dict(zip(found["ids"], found["metadatas"]))


def _record_of(index, name, **where):
    """The id of the record of file ``name`` at ``where`` (``page=2``, ``frame_index=1``)."""
    return next(
        i
        for i, m in _records(index).items()
        if m["file_name"] == name and all(m.get(key) == value for key, value in where.items())
    )


def _kinds(report):
    return sorted(problem.kind for problem in report.problems)


def _assert_restored(index, expected_ids):
    """Every item stored once, every image file present, search reaching every record."""
    report = index.check()
    assert report.healthy, report.summary_lines()
    assert set(_records(index)) == expected_ids
    assert len(index.search("Configure the budget.", k=20)) == len(expected_ids)


def test_a_healthy_index_is_healthy(index_copy, embedder):
    report = TWNIndex.open(index_copy, embedder).check()
    assert report.healthy and report.ok
    assert (report.records, report.image_files, report.reachable) == (8, 7, 8)
    assert report.summary_lines()[-1] == "healthy"


def test_deleted_images_are_found_then_restored_by_repair_and_the_next_add(index_copy, built_index_dir, embedder):
    index = TWNIndex.open(index_copy, embedder)
    ids = set(_records(index))
    delete_images(index_copy)
    report = index.check()
    assert _kinds(report) == ["missing_image", "missing_image"] and not report.ok
    missing = {p.source.rsplit("/", 1)[1]: len(p.ids) for p in report.problems}
    assert missing == {"clip.mp4": 4, "manual.pdf": 3}  # the image file is its own source, and still there
    assert "the image files of 3 items are missing (page 1, page 2, page 3)" in report.problems[1].message
    assert all(hit.image_missing for hit in index.search("Install the tool.", k=20) if hit.modality != "image")

    repaired = index.check(repair=True)
    assert repaired.ok and all(p.repaired for p in repaired.problems)
    assert [s.rsplit("/", 1)[1] for s in repaired.requeued] == ["clip.mp4", "manual.pdf"]
    added = index.add([_docs(built_index_dir)])
    # Each file's final item was deleted to re-queue it; the rest is not embedded again.
    assert (added.files_indexed, added.files_unchanged, added.items_added) == (2, 1, 2)
    _assert_restored(index, ids)
    assert not any(hit.image_missing for hit in index.search("Install the tool.", k=20))


def test_orphan_images_are_removed_by_repair(index_copy, embedder):
    index = TWNIndex.open(index_copy, embedder)
    kept = sorted(p.name for p in index.images_dir.iterdir())
    shutil.copy(index.images_dir / kept[0], index.images_dir / ("0" * 32 + "-deadbeef-p00009.png"))
    (index.images_dir / "stray.jpg").write_bytes(b"not ours")
    report = index.check()
    assert _kinds(report) == ["orphan_image"] and len(report.problems[0].paths) == 2
    assert index.check(repair=True).ok
    assert sorted(p.name for p in index.images_dir.iterdir()) == kept
    assert index.check().healthy


def test_a_duplicate_record_written_by_hand_is_found_and_removed(index_copy, embedder):
    index = TWNIndex.open(index_copy, embedder)
    page = _record_of(index, "manual.pdf", page=2)
    stored = index._collection.get(ids=[page], include=["embeddings", "metadatas", "documents"])
    index._collection.add(
        ids=["copy-of-page-2"],
        embeddings=stored["embeddings"],
        metadatas=stored["metadatas"],
        documents=stored["documents"],
    )
    report = index.check()
    assert _kinds(report) == ["duplicate", "ledger"]  # and the ledger never counted the copy
    duplicate = report.problems[0]
    assert "2 records for page 2" in duplicate.message and duplicate.delete_ids == ["copy-of-page-2"]
    assert index.check(repair=True).ok
    assert index.budget("document").ledger.items_seen == 8
    assert page in _records(index) and "copy-of-page-2" not in _records(index)
    assert index.check().healthy  # the image both records named is kept


def test_a_deleted_hnsw_folder_is_found_and_repaired_by_the_next_add(tmp_path, built_index_dir, embedder):
    """With the vector index persisted and its log purged (as in any large index), deleting its
    folder loses records that the database still lists: info counts them, search never finds them."""
    docs = _docs(built_index_dir)
    create_small_hnsw_collection(tmp_path / "index")
    index = TWNIndex.open(tmp_path / "index", embedder)
    assert index.add([docs]).items_added == 8
    ids = set(_records(index))
    delete_vector_segments(tmp_path / "index")

    index = TWNIndex.open(tmp_path / "index", embedder)
    reachable, records = index.vector_reach()
    assert records == 8 and reachable < 8 and index.info().items == 8
    assert len(index.search("Configure the budget.", k=20)) == reachable
    report = index.check()
    assert set(_kinds(report)) == {"unreachable"} and report.reachable == reachable
    assert sum(len(p.ids) for p in report.problems) == 8 - reachable

    assert index.check(repair=True).ok
    index.add([docs])
    assert index.vector_reach() == (8, 8)
    _assert_restored(index, ids)


def test_a_file_marked_complete_with_an_item_missing_is_requeued(index_copy, built_index_dir, embedder):
    index = TWNIndex.open(index_copy, embedder)
    ids = set(_records(index))
    index._delete_ids([_record_of(index, "manual.pdf", page=2), _record_of(index, "clip.mp4", frame_index=1)])
    report = index.check()
    assert _kinds(report) == ["incomplete", "incomplete"]
    messages = sorted(p.message.rsplit("/", 1)[1] for p in report.problems)
    assert messages == [
        "clip.mp4: marked complete, yet missing frame 1",
        "manual.pdf: marked complete, yet missing page 2",
    ]
    assert index.check(repair=True).ok
    # The missing item and the file's final one (deleted to re-queue it), for each file.
    assert index.add([_docs(built_index_dir)]).items_added == 4
    _assert_restored(index, ids)


def test_an_interrupted_file_is_reported_and_resumed(index_copy, built_index_dir, embedder):
    index = TWNIndex.open(index_copy, embedder)
    ids = set(_records(index))
    last = next(i for i, m in _records(index).items() if m["file_name"] == "clip.mp4" and m[LAST_IN_FILE_KEY])
    index._delete_ids([last])
    report = index.check()
    assert _kinds(report) == ["incomplete"] and "3 items stored, but not its last" in report.problems[0].message
    repaired = index.check(repair=True)
    assert repaired.ok and len(_records(index)) == 7  # nothing to delete: the next add resumes it
    assert index.add([_docs(built_index_dir)]).items_added == 1
    _assert_restored(index, ids)


def _set_ledger(index, **values):
    def write(_metadata, budgets):
        for name, value in values.items():
            setattr(budgets["document"].ledger, name, value)

    index.budgets.modify_metadata(write)


def test_the_ledger_is_checked_against_the_records_and_raised_by_repair(index_copy, embedder):
    index = TWNIndex.open(index_copy, embedder)
    results = [recorded_result(m) for m in _records(index).values()]
    thought = [r for r in results if r.thought is not None]
    assert thought  # the tiny model thinks on some items
    _set_ledger(index, items_seen=3, items_thought=0, thought_tokens=0)
    report = index.check()
    assert _kinds(report) == ["ledger"]
    assert f"items_seen 3 < 8 in the records; items_thought 0 < {len(thought)}" in report.problems[0].message
    assert index.check(repair=True).ok
    ledger = index.budget("document").ledger
    assert (ledger.items_seen, ledger.items_thought) == (8, len(thought))
    assert ledger.thought_tokens == sum(r.thought_tokens for r in thought)
    assert index.check().healthy


def test_an_unfinished_store_is_found_and_counted_by_repair(index_copy, embedder):
    """A writer killed between writing two records and counting them: its records carry its
    token, the ledger lacks them, and the store stays registered as pending."""
    index = TWNIndex.open(index_copy, embedder)
    seen = index.budget("document").ledger.items_seen
    writer = index.budgets.begin_store("document", 0)
    written = sorted(_records(index))[:2]
    index._collection.update(ids=written, metadatas=[{WRITER_KEY: writer}] * 2)
    _set_ledger(index, items_seen=seen - 2)
    report = index.check()
    assert _kinds(report) == ["pending_store"]  # the ledger plus the pending store covers the records
    assert sorted(report.problems[0].ids) == written and report.problems[0].writer == writer
    assert index.check(repair=True).ok
    assert index.budget("document").ledger.items_seen == seen
    assert json.loads(index.budgets.metadata()[PENDING_KEY]) == {}
    assert index.check().healthy


def test_the_ledger_check_reads_records_of_the_old_schema(legacy_index):
    index, written = legacy_index
    thought = sum(1 for m in written.values() if recorded_result(m).thought is not None)
    assert thought == len(written) == 7  # every document of that index thinks
    [ledger] = [p for p in index.check().problems if p.kind == "ledger"]
    assert f"items_seen 0 < 7 in the records; items_thought 0 < {thought}" in ledger.message


def test_sqlite_integrity_finds_damaged_pages(tmp_path):
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        connection.execute("CREATE INDEX t_v ON t (v)")
        connection.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i:05d}" * 20,) for i in range(400)])
    assert sqlite_integrity(path) == []
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle + 8 : middle + 4096] = b"\xff" * (4096 - 8)
    path.write_bytes(bytes(data))
    assert sqlite_integrity(path)


def test_a_damaged_database_is_moved_aside_by_repair_and_the_next_add_rebuilds(index_copy, built_index_dir, embedder):
    images = sorted(p.name for p in (index_copy / "images").iterdir())
    empty_database(index_copy)
    report = check_index_dir(index_copy)
    assert _kinds(report) == ["database"] and not report.ok and report.records is None
    assert "chroma.sqlite3 is empty (0 bytes)" in report.problems[0].message
    repaired = check_index_dir(index_copy, repair=True)
    assert repaired.ok and "moved the damaged database to" in repaired.problems[0].action
    [aside] = index_copy.glob("chroma.damaged-*")
    assert (aside / "chroma.sqlite3").stat().st_size == 0  # kept, never deleted

    index = TWNIndex.open(index_copy, embedder)
    assert index.add([_docs(built_index_dir)]).items_added == 8
    assert sorted(p.name for p in index.images_dir.iterdir()) == images
    assert index.check().healthy
    release_chroma(index_copy)


def test_repair_leaves_a_file_whose_source_is_gone(tmp_path, built_index_dir, embedder, sample_video):
    docs = write_documents(tmp_path / "docs", sample_video)
    index = TWNIndex.open(tmp_path / "index", embedder)
    index.add([docs])
    (docs / "manual.pdf").unlink()
    delete_images(tmp_path / "index")
    report = index.check(repair=True)
    by_source = {p.source.rsplit("/", 1)[1]: p for p in report.problems}
    assert by_source["clip.mp4"].repaired and not by_source["manual.pdf"].repaired
    assert "no longer exists: remove its items with `twn-rag delete`" in by_source["manual.pdf"].action
    assert not report.ok and len(_records(index)) == 8 - 1  # the clip's final item re-queued, the PDF kept


@pytest.fixture(autouse=True)
def _release(tmp_path):
    yield
    release_chroma(tmp_path / "index")
