import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.broken_documents import BROKEN_DOCUMENT_REASONS, write_broken_documents
from support.chroma_server import free_port, running_chroma_server
from support.long_text import long_page_text
from typer.testing import CliRunner

from twn_rag.cli import app
from twn_rag.index import TWNIndex
from twn_rag.loaders import FileRef, iter_file_items
from twn_rag.samples import make_sample_image, write_sample_pdf


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def good_docs(tmp_path_factory, sample_video):
    folder = tmp_path_factory.mktemp("good")
    write_sample_pdf(folder / "manual.pdf", ["Install the tool.", "Configure the budget."])
    shutil.copy(sample_video, folder / "clip.mp4")
    make_sample_image((80, 60), seed=2).save(folder / "figure.jpg")
    return folder


def _expected_ids(index: TWNIndex, folder: Path) -> set[str]:
    ids = set()
    for path in sorted(folder.iterdir()):
        ids |= {item.id for item in iter_file_items(FileRef.describe(path), index.manifest.loader)}
    return ids


def test_index_reports_each_bad_file_indexes_the_rest_and_exits_non_zero(tmp_path, good_docs, tiny_ckpt):
    broken = write_broken_documents(tmp_path / "broken")
    index_dir = tmp_path / "index"
    result = _run(
        "index", str(good_docs), str(tmp_path / "broken"), "--index", str(index_dir), "--model", str(tiny_ckpt),
        "--think-ratio", "0.5", "--max-thought-tokens", "4", "--token-budget", "20",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    # 7 items from the good files, and the 3 frames before the cut of the damaged MKV.
    summary = f"indexed 3 files (10 items added, 0 old items removed), 0 unchanged, 0 skipped, {len(broken)} failed"
    assert summary in result.stdout, result.stdout
    for name, reason in BROKEN_DOCUMENT_REASONS.items():
        line = next(line for line in result.stderr.splitlines() if line.startswith(f"FAILED {broken[name]}: "))
        assert re.search(reason, line), line
    assert re.search(r"document budget: thought \d+/10 items .*think ratio <= 0\.50.*token budget 20", result.stdout)

    index = TWNIndex.open(index_dir)
    stored = index._collection.get(include=["metadatas"])
    good = {i for i, m in zip(stored["ids"], stored["metadatas"]) if Path(m["source"]).parent == good_docs}
    assert good == _expected_ids(index, good_docs)
    # Of the broken files only the cut MKV has items: the frames before the cut, not marked complete.
    cut = [m for m in stored["metadatas"] if m["file_name"] == "cut-tail.mkv"]
    assert [m["timestamp"] for m in cut] == [0.0, 0.5, 1.0] and not any(m["last_in_file"] for m in cut)

    search = _run("search", "Configure the budget", "--index", str(index_dir), "-k", "3")
    assert search.exit_code == 0, search.output
    lines = search.stdout.strip().splitlines()
    assert len(lines) == 3
    scores = []
    for line in lines:
        score, source, location, modality, image, thought = line.split("\t")
        scores.append(float(score))
        assert Path(source).parent == good_docs and modality in {"image", "text+image"}
        assert re.fullmatch(r"page=\d+|t=\d+\.\d\ds|-", location)
        assert Path(image.removeprefix("image=")).is_file() and thought.startswith("thought=")
    assert scores == sorted(scores, reverse=True)
    assert re.search(r"query: gate \d\.\d\d, (did not think|thought '.*')", search.stderr)

    by_image = _run("search", "--image", str(good_docs / "figure.jpg"), "--index", str(index_dir), "-k", "1")
    assert by_image.exit_code == 0 and len(by_image.stdout.strip().splitlines()) == 1

    info = _run("info", "--index", str(index_dir))
    assert info.exit_code == 0, info.output
    assert "items: 10 from 4 sources (image: 8, text+image: 2)" in info.stdout
    assert re.search(r"document budget: thought \d+/10 items", info.stdout)
    assert re.search(r"query budget: thought \d+/2 items", info.stdout)

    again = _run("index", str(good_docs), "--index", str(index_dir))  # the index's own model
    assert again.exit_code == 0, again.output
    assert "indexed 0 files (0 items added, 0 old items removed), 3 unchanged" in again.stdout

    deleted = _run("delete", str(good_docs / "manual.pdf"), "--index", str(index_dir))
    assert deleted.exit_code == 0 and "2 items removed" in deleted.stdout


def test_new_index_defaults_to_the_released_model(tmp_path, good_docs):
    result = _run("index", str(good_docs), "--index", str(tmp_path / "index"))
    assert result.exit_code == 2
    assert "zhanglx/TWN-4B" in result.stderr and "Traceback" not in result.output


def test_search_needs_a_query_or_an_image(tmp_path):
    result = _run("search", "--index", str(tmp_path))
    assert result.exit_code == 2 and "QUERY" in result.stderr


def test_info_on_a_missing_index(tmp_path):
    result = _run("info", "--index", str(tmp_path / "none"))
    assert result.exit_code == 3 and "no twn-rag index" in result.stderr


def test_kill_9_mid_run_then_rerun_finishes_with_no_duplicate_and_no_missing_item(tmp_path, tiny_ckpt):
    docs = tmp_path / "docs"
    for part in range(3):
        write_sample_pdf(docs / f"part{part}.pdf", 20)
    index_dir = tmp_path / "index"
    command = [sys.executable, "-m", "twn_rag.cli", "-v", "index", str(docs), "--index", str(index_dir)]
    command += ["--model", str(tiny_ckpt), "--think-ratio", "0.3", "--max-thought-tokens", "4"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    try:
        for line in process.stderr:
            if " stored " in line:  # the first chunk is in Chroma: kill without warning
                process.send_signal(signal.SIGKILL)
                break
        process.wait()
    finally:
        watchdog.cancel()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    index = TWNIndex.open(index_dir)
    expected = _expected_ids(index, docs)
    partial = index.count()
    assert 0 < partial < len(expected)  # killed mid-way
    assert index.budget("document").ledger.items_seen >= partial  # every stored item's spend is recorded

    rerun = _run("index", str(docs), "--index", str(index_dir))
    assert rerun.exit_code == 0, rerun.output
    records = index._collection.get(include=["metadatas"])
    assert len(records["ids"]) == len(set(records["ids"])) == index.count() == len(expected)
    assert set(records["ids"]) == expected
    assert sorted(m["file_name"] for m in records["metadatas"] if m["last_in_file"]) == [
        "part0.pdf",
        "part1.pdf",
        "part2.pdf",
    ]
    assert len(list(index.images_dir.iterdir())) == len(expected)  # no orphan render either
    assert index.budget("document").ledger.items_seen == len(expected)  # each item counted once, kills or not


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """A real ``chroma run`` server on 127.0.0.1 only."""
    with running_chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def test_index_into_a_chroma_server(tmp_path, good_docs, tiny_ckpt, chroma_server):
    import chromadb

    index_dir = tmp_path / "index"
    common = ["--index", str(index_dir), "--chroma-url", chroma_server, "--collection", "manuals"]
    result = _run("index", str(good_docs), *common, "--model", str(tiny_ckpt), "--token-budget", "8")
    assert result.exit_code == 0, result.output
    assert not (index_dir / "chroma").exists()  # nothing embedded locally: only the page images

    host, port = chroma_server.removeprefix("http://").split(":")
    remote = chromadb.HttpClient(host=host, port=int(port)).get_collection("manuals")
    assert remote.count() == 7
    assert remote.metadata["twn_model_id"] == str(Path(tiny_ckpt).resolve())
    assert '"token_budget": 8' in remote.metadata["twn_budget_document"]

    search = _run("search", "Install the tool", *common, "-k", "2")
    assert search.exit_code == 0 and len(search.stdout.strip().splitlines()) == 2
    info = _run("info", *common)
    assert info.exit_code == 0 and f"index: {chroma_server} (collection 'manuals')" in info.stdout
    assert "items: 7 from 3 sources" in info.stdout

    again = _run("index", str(good_docs), *common)
    assert again.exit_code == 0 and "3 unchanged" in again.stdout and remote.count() == 7


def test_unreachable_server_is_a_clear_error(tmp_path):
    result = _run("info", "--index", str(tmp_path), "--chroma-url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 3 and "cannot reach the Chroma server" in result.stderr


def test_index_caps_text_tokens_and_batch_tokens_as_told(tmp_path, tiny_ckpt, embedder):
    pdf = write_sample_pdf(tmp_path / "docs" / "page.pdf", [long_page_text(2_400), "A short page."])
    recorded = {}
    for name, options in (("default", []), ("capped", ["--max-input-tokens", "300", "--max-batch-tokens", "900"])):
        result = _run("index", str(pdf), "--index", str(tmp_path / name), "--model", str(tiny_ckpt), *options)
        assert result.exit_code == 0, result.output
        stored = TWNIndex.open(tmp_path / name)._collection.get(include=["metadatas", "documents"])
        recorded[name] = {
            m["page"]: (m.get("twn_text_tokens_original"), d) for m, d in zip(stored["metadatas"], stored["documents"])
        }
    text = recorded["default"][1][1]
    tokens = embedder.processor.text_tokens(text)
    assert 300 < tokens < embedder.config.max_input_tokens  # within the model's cap, over the one given
    assert recorded == {
        "default": {1: (None, text), 2: (None, "A short page.")},
        "capped": {1: (tokens, text), 2: (None, "A short page.")},
    }
    result = _run("index", str(pdf), "--index", str(tmp_path / "bad"), "--max-input-tokens", "0")
    assert result.exit_code == 2 and "--max-input-tokens" in result.output


def test_index_with_ray_says_how_to_install_it(tmp_path, monkeypatch):
    pdf = write_sample_pdf(tmp_path / "doc.pdf", ["one"])
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed: import ray fails
    missing = _run("index", str(pdf), "--index", str(tmp_path / "index"), "--ray")
    assert missing.exit_code == 2 and "pip install 'twn-rag[ray]'" in missing.output
    assert not (tmp_path / "index").exists()  # nothing was started or created
