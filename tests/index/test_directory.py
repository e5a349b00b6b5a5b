"""``twn_rag/index/directory.py`` through ``TWNIndex.open``: an index directory of the wrong
kind, or with a damaged database, is refused with a clear error before Chroma opens it, and
nothing is created over it."""

import sqlite3

import pytest
from support.index_damage import database, empty_database, overwrite_header, release_chroma, truncate_database

from twn_rag.index import IndexDamagedError, IndexNotFoundError, IndexUnusableError, TWNIndex
from twn_rag.index.client import connect
from twn_rag.index.directory import sqlite_header_damage


def test_an_index_path_that_is_a_file(tmp_path, embedder):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for model in (None, embedder):
        with pytest.raises(IndexUnusableError, match="notes.txt is a file, not an index directory"):
            TWNIndex.open(path, model)
    assert path.read_text() == "mine"


def test_a_chroma_entry_that_is_a_file(tmp_path, embedder):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "chroma").write_text("mine")
    with pytest.raises(IndexUnusableError, match="chroma is a file, not a Chroma database folder"):
        TWNIndex.open(tmp_path / "index", embedder)
    assert (tmp_path / "index" / "chroma").read_text() == "mine"


def test_a_missing_index_is_not_found_and_not_created(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no twn-rag index"):
        TWNIndex.open(tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert issubclass(IndexNotFoundError, IndexUnusableError)


@pytest.mark.parametrize(
    "damage, said",
    [
        (truncate_database, r"is truncated \(\d+ bytes; its header declares \d+\)"),
        (overwrite_header, r"is not an SQLite database \(its header is damaged or overwritten\)"),
        (empty_database, r"is empty \(0 bytes\)"),
    ],
    ids=["truncated", "header overwritten", "0 bytes"],
)
def test_a_damaged_database_is_refused_and_nothing_is_created_over_it(index_copy, embedder, damage, said):
    images = sorted(p.name for p in (index_copy / "images").iterdir())
    damage(index_copy)
    before = database(index_copy).read_bytes()
    for model in (None, embedder):  # reading, and opening to write (which would create an index)
        with pytest.raises(IndexDamagedError, match=rf"chroma.sqlite3 {said}; run `twn-rag check --index "):
            TWNIndex.open(index_copy, model)
    assert database(index_copy).read_bytes() == before
    assert sorted(p.name for p in (index_copy / "images").iterdir()) == images


def test_a_database_missing_beside_its_vector_segments(index_copy, embedder):
    release_chroma(index_copy)
    database(index_copy).unlink()
    with pytest.raises(IndexDamagedError, match="chroma.sqlite3 is missing, while .* still holds vector segments"):
        TWNIndex.open(index_copy, embedder)
    assert not database(index_copy).exists()


def test_chromadb_errors_on_a_damaged_database_become_index_errors(index_copy):
    """Past the header check (``connect`` directly), chromadb's own error is translated, and its
    broken system is not kept: the database opens once it is whole again."""
    whole = database(index_copy).read_bytes()
    truncate_database(index_copy)
    with pytest.raises(IndexDamagedError, match="its Chroma database cannot be read .*malformed"):
        connect(index_copy)
    database(index_copy).write_bytes(whole)
    assert connect(index_copy).get_collection("twn").count() == 8


def test_header_damage_on_sqlite_files(tmp_path):
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 50)
    assert sqlite_header_damage(path) is None
    whole = path.read_bytes()
    path.write_bytes(whole[: 4096 * 2])
    assert f"is truncated (8192 bytes; its header declares {len(whole)})" == sqlite_header_damage(path)
    path.write_bytes(whole + b"\x00" * 10)  # a torn write past the end
    assert "not a whole number of 4096-byte pages" in sqlite_header_damage(path)
    path.write_bytes(whole[:50])
    assert "less than an SQLite header" in sqlite_header_damage(path)
