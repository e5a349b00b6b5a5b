"""The CLI over a folder of hostile files: every file is indexed (padded), failed with its
reason, or skipped with its reason; nothing blocks; names of any bytes print on one line;
machines get JSON; a crash has its own exit code and still prints what was done."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twn_rag.cli import app
from twn_rag.cli.app import FILES_FAILED, INTERNAL_ERROR
from twn_rag.index import TWNIndex
from twn_rag.index.report import printable
from twn_rag.loaders import FileRef, discover_files, iter_file_items
from twn_rag.samples import write_sample_pdf
from twn_rag.testing import hostile_files as hostile

# Nothing may block: a run that opened the FIFO or read /dev/zero would hit this.
RUN_TIMEOUT_S = 120
# As stored: undecodable bytes escaped (Chroma takes only UTF-8), a newline kept as it is.
INDEXED = ("good.pdf", "wide.png", "wide.pdf", "wide.mp4", "caf\\xe9-\\xff.pdf", "line\nbreak.pdf")
FAILED = {
    "bomb.png": "refused before decoding",
    "bomb.jpg": "refused before decoding",
    "bad\\nname.png": "cannot read image",
}
SKIPPED = {
    "loop.pdf": "symbolic link loop",
    "loop.pdf.other": "symbolic link loop",
    "pipe.pdf": "a FIFO (named pipe), not a regular file",
    "zero.mp4": "a character device, not a regular file",
}


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _run_process(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "twn_rag.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def hostile_docs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    write_sample_pdf(folder / "good.pdf", ["Install the tool.", "Configure the budget."])
    hostile.write_png_bomb(folder / "bomb.png")
    hostile.write_jpeg_bomb(folder / "bomb.jpg")
    hostile.write_wide_image(folder / "wide.png")  # 500:1
    hostile.write_wide_pdf(folder / "wide.pdf")  # a 500:1 page
    hostile.write_wide_video(folder / "wide.mp4")  # 256:1
    hostile.make_symlink_loop(folder, "loop.pdf")
    hostile.make_fifo(folder / "pipe.pdf")
    hostile.link_to_device(folder / "zero.mp4")
    write_sample_pdf(hostile.undecodable_name(folder), ["A file name that is not UTF-8."])
    write_sample_pdf(folder / "line\nbreak.pdf", ["A file name with a newline."])
    (folder / "bad\nname.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 8)
    return folder


@pytest.fixture(scope="module")
def indexed(hostile_docs, tiny_ckpt, tmp_path_factory):
    """The hostile folder indexed once by a real ``twn-rag index`` process."""
    index_dir = tmp_path_factory.mktemp("hostile-index") / "index"
    run = _run_process("index", str(hostile_docs), "--index", str(index_dir), "--model", str(tiny_ckpt))
    return index_dir, run


def _expected_ids(index, folder):
    ids = set()
    for path, _ in discover_files([folder]).files:
        if os.path.basename(path) not in ("bomb.png", "bomb.jpg", "bad\nname.png"):
            ids |= {item.id for item in iter_file_items(FileRef.describe(path), index.manifest.loader)}
    return ids


def test_every_hostile_file_is_indexed_failed_or_skipped_with_its_reason(indexed, hostile_docs):
    index_dir, run = indexed
    assert run.returncode == FILES_FAILED, run.stderr
    index = TWNIndex.open(index_dir)
    expected = _expected_ids(index, hostile_docs)
    summary = f"indexed {len(INDEXED)} files ({len(expected)} items added, 0 old items removed), 0 unchanged, "
    assert summary + f"{len(SKIPPED)} skipped, {len(FAILED)} failed" in run.stdout, run.stdout

    failed = {}
    for line in run.stderr.splitlines():
        if line.startswith("FAILED "):
            path, reason = line.removeprefix("FAILED ").split(": ", 1)
            failed[os.path.relpath(path, hostile_docs)] = reason
    assert set(failed) == set(FAILED)  # one line each, the newline in a name escaped
    for name, reason in FAILED.items():
        assert reason in failed[name], failed[name]
    skipped = [line for line in run.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(SKIPPED) and len(run.stdout.splitlines()) == 3 + len(SKIPPED)
    for line in skipped:
        path, reason = line.removeprefix("skipped ").split(": ", 1)
        assert SKIPPED[os.path.relpath(path, hostile_docs)] in reason

    records = index._collection.get(include=["metadatas"])
    assert set(records["ids"]) == expected  # the padded files and the odd names are all in
    complete = {m["file_name"] for m in records["metadatas"] if m["last_in_file"]}
    assert complete == set(INDEXED)
    recorded = {Path(m["image_path"]).name for m in records["metadatas"] if m["source_type"] != "image"}
    assert {p.name for p in index.images_dir.iterdir()} == recorded  # no orphaned page or frame image


def test_a_rerun_finds_every_stored_file_again_and_json_reports_it(indexed, hostile_docs):
    index_dir, _ = indexed
    rerun = _run_process("index", str(hostile_docs), "--index", str(index_dir), "--json")
    assert rerun.returncode == FILES_FAILED, rerun.stderr
    [line] = rerun.stdout.splitlines()  # one JSON document
    report = json.loads(line)
    assert report["files_unchanged"] == len(INDEXED) and report["files_indexed"] == report["items_added"] == 0
    assert {printable(os.path.basename(f["path"])) for f in report["failures"]} == set(FAILED)  # real names
    assert {os.path.basename(s["path"]) for s in report["skipped"]} == set(SKIPPED)
    assert report["error"] is None and report["document_budget"]["ledger"]["items_seen"] > 0


def test_search_prints_exactly_k_lines_whatever_the_names(indexed, hostile_docs):
    index_dir, _ = indexed
    count = TWNIndex.open(index_dir).count()
    search = _run("search", "A file name", "--index", str(index_dir), "-k", str(count))
    assert search.exit_code == 0, search.output
    lines = search.stdout.splitlines()
    assert len(lines) == count
    sources = {line.split("\t")[1] for line in lines}
    assert all(len(line.split("\t")) == 6 for line in lines)
    assert str(hostile_docs / "line\\nbreak.pdf") in sources
    assert str(hostile_docs / "caf\\xe9-\\xff.pdf") in sources

    as_json = _run("search", "A file name", "--index", str(index_dir), "-k", str(count), "--json")
    assert as_json.exit_code == 0, as_json.output
    hits = [json.loads(line) for line in as_json.stdout.splitlines()]  # one object per hit per line
    assert len(hits) == count and str(hostile_docs / "line\nbreak.pdf") in {hit["source"] for hit in hits}
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)

    info = _run("info", "--index", str(index_dir), "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["items"] == count


def test_a_crash_has_its_own_exit_code_and_still_prints_the_summary(tmp_path, tiny_ckpt, monkeypatch):
    docs = tmp_path / "docs"
    (docs).mkdir()
    (docs / "0-empty.pdf").write_bytes(b"")
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        write_sample_pdf(docs / name, [f"The file {name}."])
    real_store = TWNIndex.store
    stores = []

    def store_then_fail(self, items, results, **options):  # the store breaks after the first file
        stores.append(len(items))
        if len(stores) > 1:
            raise RuntimeError("the disk is on fire")
        return real_store(self, items, results, **options)

    monkeypatch.setattr(TWNIndex, "store", store_then_fail)
    result = _run("index", str(docs), "--index", str(tmp_path / "index"), "--model", str(tiny_ckpt))
    assert result.exit_code == INTERNAL_ERROR != FILES_FAILED, result.output
    assert "indexed 1 files (1 items added, 0 old items removed), 0 unchanged, 0 skipped, 1 failed" in result.stdout
    assert f"FAILED {docs / '0-empty.pdf'}: empty file" in result.stderr  # failures seen before the crash
    assert "Traceback" in result.stderr and "RuntimeError: the disk is on fire" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: internal error: indexing stopped while indexing {docs / 'b.pdf'}: RuntimeError")

    as_json = _run("index", str(docs), "--index", str(tmp_path / "index"), "--json")
    assert as_json.exit_code == INTERNAL_ERROR
    report = json.loads(as_json.stdout)
    assert report["error"].startswith("indexing stopped while indexing") and report["files_unchanged"] == 1
